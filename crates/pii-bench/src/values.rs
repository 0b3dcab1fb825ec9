//! Generators of labelled sensitive values, each valid for its type, in realistic context.

use portcullis_sanitize::EntityType;

use crate::corpus::Piece;
use crate::rng::{ALNUM, B64, B64URL, HEX, LOWER, Rng, UPPER_NUM};

const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar", "peggy", "rupert", "sybil", "trent", "victor", "walter", "jean", "lena", "jürgen",
];
const LAST: &[&str] = &[
    "smith", "jones", "miller", "garcia", "martin", "dubois", "schmidt", "muller", "brown",
    "taylor", "wilson", "moreau", "fischer", "weber", "lopez", "nguyen",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "acme-corp.com",
    "mail.example.org",
    "gmail.com",
    "company.co.uk",
    "uni-berlin.de",
    "orange.fr",
    "outlook.com",
    "startup.io",
    "dept.agency.gov",
];

/// A labelled value of `entity` with some surrounding words.
pub fn entity(rng: &mut Rng, entity: EntityType) -> Vec<Piece> {
    let (value, before, after) = match entity {
        EntityType::Email => (
            email(rng),
            pick(
                rng,
                &[
                    "Contact me at ",
                    "from: ",
                    "email=",
                    "send it to ",
                    "cc ",
                    "<",
                ],
            ),
            pick(rng, &[" thanks.", " asap", ">", ", ok?", "\n"]),
        ),
        EntityType::Phone => (
            phone(rng),
            pick(
                rng,
                &[
                    "call me at ",
                    "phone: ",
                    "Tel. ",
                    "my number is ",
                    "reach me on ",
                    "mobile ",
                    "Telefon: ",
                    "tél. ",
                    "whatsapp ",
                ],
            ),
            pick(
                rng,
                &[" after 5pm.", ", thanks", ".\n", " (office)", " any time"],
            ),
        ),
        EntityType::CreditCard => (
            card(rng),
            pick(
                rng,
                &["card ", "paid with ", "cc: ", "Card number: ", "charge "],
            ),
            pick(rng, &[" exp 04/27", ".", " please", "\n"]),
        ),
        EntityType::UsSsn => return ssn(rng),
        EntityType::Iban => (
            iban(rng),
            pick(rng, &["IBAN: ", "wire to ", "account ", "pay into "]),
            pick(rng, &[" (EUR)", ".", " by Friday", "\n"]),
        ),
        EntityType::Ip => return ip(rng),
        EntityType::Secret => return secret(rng),
    };
    vec![
        Piece::Text(before.to_owned()),
        Piece::Entity(entity, value),
        Piece::Text(after.to_owned()),
    ]
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    rng.pick(items).copied().unwrap_or("")
}

fn email(rng: &mut Rng) -> String {
    let first = pick(rng, FIRST).replace('ü', "u");
    let last = pick(rng, LAST);
    let domain = pick(rng, DOMAINS);
    match rng.below(5) {
        0 => format!("{first}.{last}@{domain}"),
        1 => format!("{}{last}@{domain}", first.get(..1).unwrap_or("x")),
        2 => format!("{first}_{last}{}@{domain}", rng.below(100)),
        3 => format!(
            "{first}+{}@{domain}",
            pick(rng, &["news", "billing", "test"])
        ),
        _ => format!("{}.{}@{domain}", capitalize(&first), capitalize(last)),
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn nanp(rng: &mut Rng) -> (String, String, String) {
    (
        format!("{}{}", rng.range(2, 9), rng.digits(2)),
        format!("{}{}", rng.range(2, 9), rng.digits(2)),
        rng.digits(4),
    )
}

fn phone(rng: &mut Rng) -> String {
    let (a, e, n) = nanp(rng);
    let uk_london = format!("20 {} {}", rng.range(3000, 8999), rng.digits(4));
    let uk_mobile = format!("7{} {}", rng.range(100, 999), rng.range(100_000, 999_999));
    let de_city = pick(rng, &["30", "40", "89", "221", "69"]).to_owned();
    let de_len = usize::try_from(rng.range(6, 7)).unwrap_or(7);
    let de_sub = format!("{}{}", rng.range(1, 9), rng.digits(de_len));
    let de_mobile = format!("15{}", rng.range(1, 9));
    let fr = format!(
        "{} {:02} {:02} {:02} {:02}",
        rng.range(1, 9),
        rng.below(100),
        rng.below(100),
        rng.below(100),
        rng.below(100)
    );
    match rng.below(18) {
        0 => format!("({a}) {e}-{n}"),
        1 => format!("+1 {a}-{e}-{n}"),
        2 => format!("{a}-{e}-{n}"),
        3 => format!("{a}.{e}.{n}"),
        4 => format!("+1{a}{e}{n}"),
        5 => format!("+1 ({a}) {e}-{n}"),
        6 => format!("+44 {uk_london}"),
        7 => format!("0{uk_london}"),
        8 => format!("0{uk_mobile}"),
        9 => format!("+44 {uk_mobile}"),
        10 => format!("+49 {de_city} {de_sub}"),
        11 => format!("0{de_city} {de_sub}"),
        12 => format!("+49 {de_mobile} {}", rng.digits(8)),
        13 => format!("0{de_mobile} {}", rng.digits(8)),
        14 => format!("+33 {fr}"),
        15 => format!("0{fr}"),
        16 => format!("0{}", fr.replace(' ', ".")),
        _ => format!("+33{}", fr.replace(' ', "")),
    }
}

/// Appends the Luhn check digit to `body`.
pub fn with_luhn(body: &str) -> String {
    let digits: Vec<u32> = body.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(idx, d)| {
            if idx % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                *d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn card(rng: &mut Rng) -> String {
    let (prefix, len) = match rng.below(6) {
        0 | 1 => ("4".to_owned(), 16),
        2 => (format!("5{}", rng.range(1, 5)), 16),
        3 => (format!("{}", rng.range(2221, 2720)), 16),
        4 => (pick(rng, &["34", "37"]).to_owned(), 15),
        _ => (pick(rng, &["6011", "65", "644"]).to_owned(), 16),
    };
    let body = format!("{prefix}{}", rng.digits(len - 1 - prefix.len()));
    let number = with_luhn(&body);
    let sep = pick(rng, &[" ", "-", ""]);
    let groups: &[usize] = if len == 15 { &[4, 6, 5] } else { &[4, 4, 4, 4] };
    let mut parts = Vec::new();
    let mut rest = number.as_str();
    for size in groups {
        let (head, tail) = rest.split_at_checked(*size).unwrap_or((rest, ""));
        parts.push(head);
        rest = tail;
    }
    parts.join(sep)
}

fn ssn(rng: &mut Rng) -> Vec<Piece> {
    let mut area = rng.range(1, 899);
    if area == 666 {
        area = 667;
    }
    let (g, s) = (rng.range(1, 99), rng.range(1, 9999));
    let (before, value) = match rng.below(5) {
        0 => ("SSN: ", format!("{area:03}{g:02}{s:04}")),
        1 => (
            "social security number ",
            format!("{area:03} {g:02} {s:04}"),
        ),
        _ => (
            pick(
                rng,
                &["SSN ", "ssn: ", "her SSN is ", "SSN#: ", "tax id (SSN) "],
            ),
            format!("{area:03}-{g:02}-{s:04}"),
        ),
    };
    vec![
        Piece::Text(before.to_owned()),
        Piece::Entity(EntityType::UsSsn, value),
        Piece::Text(pick(rng, &[".", " on file", "\n", ", verified"]).to_owned()),
    ]
}

/// The check digits for `country` and `bban` (mod 97-10).
pub fn iban_check(country: &str, bban: &str) -> u32 {
    let rearranged = format!("{bban}{country}00");
    let mut rem = 0u32;
    for c in rearranged.chars() {
        let value = c.to_digit(36).unwrap_or(0);
        rem = if value >= 10 {
            (rem * 100 + value) % 97
        } else {
            (rem * 10 + value) % 97
        };
    }
    98 - rem
}

fn iban(rng: &mut Rng) -> String {
    let (country, bban) = match rng.below(6) {
        0 => ("DE", rng.digits(18)),
        1 => (
            "GB",
            format!(
                "{}{}",
                rng.string("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4),
                rng.digits(14)
            ),
        ),
        2 => (
            "FR",
            format!(
                "{}{}{}",
                rng.digits(10),
                rng.string(UPPER_NUM, 11),
                rng.digits(2)
            ),
        ),
        3 => (
            "NL",
            format!(
                "{}{}",
                rng.string("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4),
                rng.digits(10)
            ),
        ),
        4 => ("ES", rng.digits(20)),
        _ => (
            "IT",
            format!(
                "{}{}",
                rng.string("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1),
                rng.digits(22)
            ),
        ),
    };
    let compact = format!("{country}{:02}{bban}", iban_check(country, &bban));
    if rng.chance(60) {
        let chars: Vec<char> = compact.chars().collect();
        chars
            .chunks(4)
            .map(|g| g.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        compact
    }
}

fn ip(rng: &mut Rng) -> Vec<Piece> {
    let v4 = |rng: &mut Rng| {
        format!(
            "{}.{}.{}.{}",
            rng.range(1, 223),
            rng.below(256),
            rng.below(256),
            rng.range(1, 254)
        )
    };
    let group = |rng: &mut Rng| format!("{:x}", rng.range(1, 0xffff));
    let (before, value, after) = match rng.below(9) {
        0 => ("client ip=".to_owned(), v4(rng), " ".to_owned()),
        1 => (
            "connect to ".to_owned(),
            v4(rng),
            format!(":{}", rng.range(1024, 65535)),
        ),
        2 => ("allow from ".to_owned(), v4(rng), "/32".to_owned()),
        3 => {
            let groups: Vec<String> = (0..8).map(|_| group(rng)).collect();
            ("src ".to_owned(), groups.join(":"), ",".to_owned())
        }
        4 => {
            let v = format!("2001:db8:{}::{}:{}", group(rng), group(rng), group(rng));
            ("IPv6 ".to_owned(), v, " up".to_owned())
        }
        5 => {
            let v = format!("fe80::{}:{}%eth0", group(rng), group(rng));
            ("link-local ".to_owned(), v, ".".to_owned())
        }
        6 => (
            "mapped ".to_owned(),
            format!("::ffff:{}", v4(rng)),
            " ok".to_owned(),
        ),
        7 => {
            let groups: Vec<String> = (0..8)
                .map(|_| format!("{:04X}", rng.below(0x10000)))
                .collect();
            (
                "host [".to_owned(),
                groups.join(":"),
                format!("]:{}", rng.range(1, 9999)),
            )
        }
        _ => (
            "peer ".to_owned(),
            format!("2a00:{}:{}::{}", group(rng), group(rng), group(rng)),
            " dropped".to_owned(),
        ),
    };
    vec![
        Piece::Text(before),
        Piece::Entity(EntityType::Ip, value),
        Piece::Text(after),
    ]
}

fn secret(rng: &mut Rng) -> Vec<Piece> {
    let s = |rng: &mut Rng, alphabet: &str, len: usize| rng.string(alphabet, len);
    let token = match rng.below(36) {
        0 => format!("sk-proj-{}", s(rng, B64URL, 56)),
        1 => format!("sk-{}", s(rng, ALNUM, 48)),
        2 => format!("sk-ant-api03-{}AA", s(rng, B64URL, 93)),
        3 => format!("AKIA{}", s(rng, UPPER_NUM, 16)),
        4 => format!("ghp_{}", s(rng, ALNUM, 36)),
        5 => format!("github_pat_{}_{}", s(rng, ALNUM, 22), s(rng, ALNUM, 59)),
        6 => format!("glpat-{}", s(rng, B64URL, 20)),
        7 => format!(
            "xoxb-{}-{}-{}",
            rng.digits(11),
            rng.digits(12),
            s(rng, ALNUM, 24)
        ),
        8 => format!("sk_live_{}", s(rng, ALNUM, 24)),
        9 => format!("AIza{}", s(rng, B64URL, 35)),
        10 => format!(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{}.{}",
            s(rng, B64URL, 40),
            s(rng, B64URL, 43)
        ),
        11 => format!("SK{}", s(rng, HEX, 32)),
        12 => format!("SG.{}.{}", s(rng, B64URL, 22), s(rng, B64URL, 43)),
        13 => format!("npm_{}", s(rng, ALNUM, 36)),
        14 => format!("pypi-AgEIcHlwaS5vcmc{}", s(rng, B64URL, 60)),
        15 => format!(
            "hf_{}",
            s(
                rng,
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                34
            )
        ),
        16 => format!(
            "M{}.{}.{}",
            s(rng, ALNUM, 23),
            s(rng, B64URL, 6),
            s(rng, B64URL, 27)
        ),
        17 => format!(
            "{}:AA{}",
            rng.range(100_000_000, 9_999_999_999),
            s(rng, B64URL, 33)
        ),
        18 => format!("shpat_{}", s(rng, HEX, 32)),
        19 => format!("dop_v1_{}", s(rng, HEX, 64)),
        20 => format!("xoxp-{}-{}", rng.digits(12), s(rng, ALNUM, 32)),
        21 => format!("whsec_{}", s(rng, ALNUM, 32)),
        22 => format!("gho_{}", s(rng, ALNUM, 36)),
        23 => format!("rk_live_{}", s(rng, ALNUM, 30)),
        24 => format!("lin_api_{}", s(rng, ALNUM, 40)),
        25 => return context_secret("aws_secret_access_key = ", s(rng, B64, 40), "\n"),
        26 => {
            let key = format!("{}==", s(rng, B64, 86));
            let account = s(rng, LOWER, 10);
            let before =
                format!("DefaultEndpointsProtocol=https;AccountName={account};AccountKey=");
            return context_secret(&before, key, ";EndpointSuffix=core.windows.net");
        }
        27 => return context_secret("DD_API_KEY=", s(rng, HEX, 32), "\n"),
        28 => {
            let user = pick(rng, &["app", "admin", "svc_etl", "deploy"]).to_owned();
            let pass = s(rng, ALNUM, 14);
            let scheme = pick(
                rng,
                &["postgres://", "mysql://", "https://", "redis://", "amqp://"],
            );
            let host = pick(
                rng,
                &[
                    "db.internal:5432/app",
                    "cache:6379",
                    "api.example.com/v1",
                    "mq:5672",
                ],
            );
            return vec![
                Piece::Text(format!("url {scheme}")),
                Piece::Entity(EntityType::Secret, format!("{user}:{pass}")),
                Piece::Text(format!("@{host} ")),
            ];
        }
        29 => {
            let pw = format!(
                "{}{}!{}",
                capitalize(pick(rng, LAST)),
                rng.digits(3),
                s(rng, ALNUM, 4)
            );
            return context_secret("\"password\": \"", pw, "\",");
        }
        30 => return context_secret("API_TOKEN=", s(rng, ALNUM, 32), "\n"),
        31 => return context_secret("client_secret: ", s(rng, B64URL, 40), "\n"),
        32 => {
            let body: Vec<String> = (0..6).map(|_| s(rng, B64, 64)).collect();
            let kind = pick(rng, &["RSA ", "EC ", "OPENSSH ", ""]);
            format!(
                "-----BEGIN {kind}PRIVATE KEY-----\n{}\n-----END {kind}PRIVATE KEY-----",
                body.join("\n")
            )
        }
        33 => format!("key-{}", s(rng, HEX, 32)),
        34 => format!("gsk_{}", s(rng, ALNUM, 52)),
        _ => format!("doo_v1_{}", s(rng, HEX, 64)),
    };
    let before = pick(
        rng,
        &[
            "token ",
            "use ",
            "key: ",
            "export KEY=",
            "Authorization: Bearer ",
            "leaked ",
        ],
    );
    let after = pick(rng, &["\n", " in prod", " (rotate!)", ". "]);
    vec![
        Piece::Text(before.to_owned()),
        Piece::Entity(EntityType::Secret, token),
        Piece::Text(after.to_owned()),
    ]
}

fn context_secret(before: &str, value: String, after: &str) -> Vec<Piece> {
    vec![
        Piece::Text(before.to_owned()),
        Piece::Entity(EntityType::Secret, value),
        Piece::Text(after.to_owned()),
    ]
}
