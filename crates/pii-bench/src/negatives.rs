//! Hard negatives: values that look like PII or secrets but are not, and neutral filler text.

use crate::rng::{ALNUM, B64, HEX, Rng};
use crate::values::with_luhn;

const FILLER: &[&str] = &[
    "Thanks for getting back to me so quickly.",
    "The deployment finished without errors, but the dashboard still shows stale numbers.",
    "Could you check whether the nightly job picked up the new configuration?",
    "We rolled back the change after the error rate went up for about ten minutes.",
    "Please find the summary of yesterday's incident below.",
    "The customer asked for a refund because the order arrived late.",
    "I have attached the logs from the failing run; the relevant part is near the end.",
    "Grüße aus München, das Meeting ist auf Donnerstag verschoben.",
    "Le rapport est prêt, merci de le relire avant vendredi.",
    "Let me know if anything else is needed from my side 🙂",
    "The agent retried the tool call three times before giving up.",
    "Latency is back to normal after the cache was warmed.",
    "Our next sprint review is scheduled for the afternoon.",
    "The migration touched 14 tables and took roughly 40 minutes.",
    "This ticket duplicates an older one, closing it.",
    "Summary: no user impact, root cause identified, follow-up actions assigned.",
];

/// A neutral sentence.
pub fn filler(rng: &mut Rng) -> String {
    let sentence = rng.pick(FILLER).copied().unwrap_or("");
    format!("{sentence} ")
}

fn uuid(rng: &mut Rng) -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        rng.string(HEX, 8),
        rng.string(HEX, 4),
        rng.string(HEX, 3),
        rng.string("89ab", 1),
        rng.string(HEX, 3),
        rng.string(HEX, 12)
    )
}

/// A 16-digit number that starts like a Visa card but fails Luhn.
fn bad_luhn(rng: &mut Rng) -> String {
    let valid = with_luhn(&format!("4{}", rng.digits(14)));
    let (body, check) = valid.split_at_checked(15).unwrap_or((&valid, "0"));
    let check = check.parse::<u32>().unwrap_or(0);
    format!(
        "{body}{}",
        (check + 1 + u32::try_from(rng.below(8)).unwrap_or(0)) % 10
    )
}

/// One hard negative with its context.
pub fn hard_negative(rng: &mut Rng) -> String {
    match rng.below(40) {
        0 => format!("request_id={} ", uuid(rng)),
        1 => format!("commit {} ", rng.string(HEX, 40)),
        2 => format!("merged in {} and ", rng.string(HEX, 7)),
        3 => format!("sha256:{} ", rng.string(HEX, 64)),
        4 => format!("md5 {} ", rng.string(HEX, 32)),
        5 => format!("order ORD-{}-{} ", rng.range(2019, 2026), rng.digits(6)),
        6 => format!("order #{} ", rng.digits(8)),
        7 => format!("order {} shipped ", rng.range(2_000_000_000, 9_999_999_999)),
        8 => format!(
            "at {}-{:02}-{:02}T{:02}:{:02}:{:02}Z ",
            rng.range(2019, 2026),
            rng.range(1, 12),
            rng.range(1, 28),
            rng.below(24),
            rng.below(60),
            rng.below(60)
        ),
        9 => format!(
            "{}-{:02}-{:02} {:02}:{:02}:{:02}.{} INFO ",
            rng.range(2019, 2026),
            rng.range(1, 12),
            rng.range(1, 28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.digits(3)
        ),
        10 => format!(
            "version {}.{}.{} ",
            rng.below(20),
            rng.below(30),
            rng.below(100)
        ),
        11 => format!(
            "upgraded to v{}.{}.{}.{} ",
            rng.below(20),
            rng.below(30),
            rng.below(100),
            rng.below(999)
        ),
        12 => format!(
            "Chrome/{}.0.{}.{} ",
            rng.range(100, 130),
            rng.range(1000, 9999),
            rng.below(300)
        ),
        13 => format!(
            "total ${},{:03}.{:02} ",
            rng.range(1, 99),
            rng.below(1000),
            rng.below(100)
        ),
        14 => format!("{},{:02} EUR ", rng.range(1, 9999), rng.below(100)),
        15 => format!("tracking {} ", bad_luhn(rng)),
        16 => {
            let n = bad_luhn(rng);
            let (a, rest) = n.split_at_checked(4).unwrap_or((&n, ""));
            let (b, rest) = rest.split_at_checked(4).unwrap_or((rest, ""));
            let (c, d) = rest.split_at_checked(4).unwrap_or((rest, ""));
            format!("ref {a} {b} {c} {d} ")
        }
        17 => format!("crc32 0x{} ", rng.string(HEX, 8)),
        18 => format!("listening on localhost:{} ", rng.range(1024, 65535)),
        19 => format!("port {} open ", rng.range(1, 65535)),
        20 => format!(
            "max_tokens: {}, token_count={} ",
            rng.range(256, 8192),
            rng.range(1, 999)
        ),
        21 => "tokenizer: cl100k_base ".to_owned(),
        22 => format!("idempotency_key: {} ", uuid(rng)),
        23 => "sort_key = created_at_desc, password: required ".to_owned(),
        24 => "api_key: ${OPENAI_API_KEY} token=<redacted> ".to_owned(),
        25 => format!("data:image/png;base64,{} ", rng.string(B64, 120)),
        26 => format!("etag W/\"{}\" ", rng.string(HEX, 24)),
        27 => format!(
            "at {:02}:{:02}:{:02} on {:02}/{:02}/{} ",
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.range(1, 12),
            rng.range(1, 28),
            rng.range(2019, 2026)
        ),
        28 => format!(
            "mac {}:{}:{}:{}:{}:{} ",
            rng.string("0123456789ABCDEF", 2),
            rng.string("0123456789ABCDEF", 2),
            rng.string("0123456789ABCDEF", 2),
            rng.string("0123456789ABCDEF", 2),
            rng.string("0123456789ABCDEF", 2),
            rng.string("0123456789ABCDEF", 2)
        ),
        29 => format!("OID 1.3.6.1.4.1.{} ", rng.range(1, 60000)),
        30 => format!(
            "ISBN 978-{}-{}-{}-{} ",
            rng.below(10),
            rng.digits(2),
            rng.digits(6),
            rng.below(10)
        ),
        31 => format!(
            "lat {}.{}, lon {}.{} ",
            rng.range(1, 89),
            rng.digits(6),
            rng.range(1, 179),
            rng.digits(6)
        ),
        32 => format!(
            "build {}.{:02}.{:02} ",
            rng.range(2019, 2026),
            rng.range(1, 12),
            rng.range(1, 28)
        ),
        33 => format!("ticket INC-{} ", rng.digits(7)),
        34 => format!(
            "object key uploads/{}/{}.pdf ",
            uuid(rng),
            rng.string(ALNUM, 10)
        ),
        35 => format!(
            "session {} expires in {}s ",
            rng.string(HEX, 16),
            rng.range(60, 3600)
        ),
        36 => format!("account no. {} ", rng.digits(9)),
        37 => format!("{} x {} px ", rng.range(320, 3840), rng.range(200, 2160)),
        38 => format!("getUserProfileById({}) ", rng.range(1, 99999)),
        _ => format!(
            "SKU-{}-{} ",
            rng.string("ABCDEFGHJKLMNPQRSTUVWXYZ", 3),
            rng.digits(5)
        ),
    }
}
