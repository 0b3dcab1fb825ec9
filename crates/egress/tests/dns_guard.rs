//! The real DNS guard over UDP and TCP, queried with hickory-proto messages; the upstream is a
//! counting fixture resolver, so refused names provably never leave.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use portcullis_egress::{
    DnsDeps, DnsLimits, FixtureResolver, PolicyHandle, StaticLeases, run_dns_guard,
};
use portcullis_netpolicy::DnsFixture;
use portcullis_test_support::ManualClock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;

struct Guard {
    udp: SocketAddr,
    tcp: SocketAddr,
    resolver: Arc<FixtureResolver>,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Guard {
    let resolver = Arc::new(FixtureResolver::new(
        DnsFixture::parse(
            r#"{
                "allowed.test": {"A": ["10.0.0.1", "127.0.0.2", "93.184.216.34", "169.254.169.254"],
                                 "AAAA": ["::1", "2606:2800:220:1::1"]},
                "lan.test": {"A": ["192.168.1.1"]},
                "gone.test": {"rcode": "NXDOMAIN"},
                "broken.test": {"rcode": "SERVFAIL"},
                "denied.test": {"A": ["93.184.216.34"]}
            }"#,
        )
        .unwrap(),
    ));
    let policy = common::policy(
        r#"
allow = ["allowed.test", "lan.test", "gone.test", "broken.test"]
allow_cidrs = ["127.0.0.2/32"]
"#,
    );
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let deps = DnsDeps {
        policy: Arc::new(PolicyHandle::new(policy)),
        resolver: resolver.clone(),
        leases: Arc::new(StaticLeases::default()),
        clock: Arc::new(ManualClock::at_epoch_2026()),
        road: common::test_road(Arc::new(common::NoEvents)),
        limits: DnsLimits::default(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run_dns_guard(udp, tcp, deps, async move {
        let _ = stopped.await;
    }));
    Guard {
        udp: udp_addr,
        tcp: tcp_addr,
        resolver,
        _stop: stop,
    }
}

fn query(id: u16, name: &str, record_type: RecordType, class: DNSClass) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let mut query = Query::query(Name::from_ascii(name).unwrap(), record_type);
    query.set_query_class(class);
    message.add_query(query);
    message.set_edns(Edns::new());
    message.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, packet: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(packet, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (len, _) = socket.recv_from(&mut buf).await.unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

async fn ask_tcp(server: SocketAddr, packets: &[Vec<u8>]) -> Vec<Message> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let mut replies = Vec::new();
    for packet in packets {
        stream.write_u16(packet.len() as u16).await.unwrap();
        stream.write_all(packet).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        replies.push(Message::from_vec(&buf).unwrap());
    }
    replies
}

fn addrs(message: &Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            other => panic!("unexpected record {other:?}"),
        })
        .collect()
}

#[track_caller]
fn check(reply: &Message, id: u16, rcode: ResponseCode, expected: &[&str]) {
    assert_eq!(reply.metadata.id, id);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert_eq!(reply.metadata.response_code, rcode, "{reply:?}");
    let expected: Vec<IpAddr> = expected.iter().map(|a| a.parse().unwrap()).collect();
    assert_eq!(addrs(reply), expected);
}

/// (id, name, type, rcode, answers, upstream queries so far)
type AnswerCase = (
    u16,
    &'static str,
    RecordType,
    ResponseCode,
    &'static [&'static str],
    u64,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_names_are_answered_with_vetted_addresses_only() {
    let guard = start().await;
    // (id, name, type, rcode, answers, upstream queries so far)
    let cases: &[AnswerCase] = &[
        (
            1,
            "allowed.test.",
            RecordType::A,
            ResponseCode::NoError,
            &["127.0.0.2", "93.184.216.34"],
            1,
        ),
        (
            2,
            "ALLOWED.test.",
            RecordType::AAAA,
            ResponseCode::NoError,
            &["2606:2800:220:1::1"],
            2,
        ),
        (3, "lan.test.", RecordType::A, ResponseCode::NoError, &[], 3),
        (
            4,
            "gone.test.",
            RecordType::A,
            ResponseCode::NXDomain,
            &[],
            4,
        ),
        (
            5,
            "broken.test.",
            RecordType::A,
            ResponseCode::ServFail,
            &[],
            5,
        ),
    ];
    for (id, name, record_type, rcode, answers, queries) in cases {
        let reply = ask_udp(guard.udp, &query(*id, name, *record_type, DNSClass::IN)).await;
        check(&reply, *id, *rcode, answers);
        assert_eq!(reply.queries.len(), 1, "{name}");
        assert!(reply.edns.is_some(), "{name}");
        assert_eq!(guard.resolver.queries(), *queries, "{name}");
    }
    let replies = ask_tcp(
        guard.tcp,
        &[
            query(7, "allowed.test.", RecordType::A, DNSClass::IN),
            query(8, "allowed.test.", RecordType::AAAA, DNSClass::IN),
        ],
    )
    .await;
    check(
        &replies[0],
        7,
        ResponseCode::NoError,
        &["127.0.0.2", "93.184.216.34"],
    );
    check(
        &replies[1],
        8,
        ResponseCode::NoError,
        &["2606:2800:220:1::1"],
    );
    assert_eq!(guard.resolver.queries(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_else_is_refused_without_an_upstream_query() {
    let guard = start().await;
    let cases: &[(u16, &str, RecordType, DNSClass, ResponseCode)] = &[
        (
            1,
            "denied.test.",
            RecordType::A,
            DNSClass::IN,
            ResponseCode::Refused,
        ),
        (
            2,
            "exfil-6b6579.attacker.example.",
            RecordType::A,
            DNSClass::IN,
            ResponseCode::Refused,
        ),
        (
            3,
            "sub.allowed.test.",
            RecordType::AAAA,
            DNSClass::IN,
            ResponseCode::Refused,
        ),
        (
            4,
            "dns.google.",
            RecordType::A,
            DNSClass::IN,
            ResponseCode::Refused,
        ),
        (
            5,
            "allowed.test.",
            RecordType::TXT,
            DNSClass::IN,
            ResponseCode::Refused,
        ),
        (
            6,
            "allowed.test.",
            RecordType::MX,
            DNSClass::IN,
            ResponseCode::Refused,
        ),
        (
            7,
            "allowed.test.",
            RecordType::ANY,
            DNSClass::IN,
            ResponseCode::Refused,
        ),
        (
            8,
            "allowed.test.",
            RecordType::A,
            DNSClass::CH,
            ResponseCode::Refused,
        ),
        (
            9,
            "1.0.0.127.in-addr.arpa.",
            RecordType::PTR,
            DNSClass::IN,
            ResponseCode::Refused,
        ),
        (
            10,
            "a_b.allowed.test.",
            RecordType::A,
            DNSClass::IN,
            ResponseCode::Refused,
        ),
    ];
    for (id, name, record_type, class, rcode) in cases {
        let packet = query(*id, name, *record_type, *class);
        let reply = ask_udp(guard.udp, &packet).await;
        check(&reply, *id, *rcode, &[]);
        let replies = ask_tcp(guard.tcp, &[packet]).await;
        check(&replies[0], *id, *rcode, &[]);
    }
    // Malformed and multi-question messages.
    let reply = ask_udp(guard.udp, &[0x12, 0x34, 0xff]).await;
    assert_eq!(
        (reply.metadata.id, reply.metadata.response_code),
        (0x1234, ResponseCode::FormErr)
    );
    let mut two = Message::new(11, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(
        Name::from_ascii("allowed.test.").unwrap(),
        RecordType::A,
    ));
    two.add_query(Query::query(
        Name::from_ascii("denied.test.").unwrap(),
        RecordType::A,
    ));
    let reply = ask_udp(guard.udp, &two.to_vec().unwrap()).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    // Questions that cannot be echoed within 512 bytes: the header alone, truncated.
    let mut many = Message::new(13, MessageType::Query, OpCode::Query);
    for n in 0..40 {
        let name = format!("{}{n:02}.tld{n:02}.", "x".repeat(12));
        many.add_query(Query::query(
            Name::from_ascii(&name).unwrap(),
            RecordType::A,
        ));
    }
    let packet = many.to_vec().unwrap();
    assert!(packet.len() > 512);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&packet, guard.udp).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let len = socket.recv(&mut buf).await.unwrap();
    assert!(len <= 512, "a UDP answer of {len} bytes");
    let reply = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    assert!(reply.metadata.truncation);
    let update = Message::new(12, MessageType::Query, OpCode::Update);
    let reply = ask_udp(guard.udp, &update.to_vec().unwrap()).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(guard.resolver.queries(), 0);
}
