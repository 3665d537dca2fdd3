//! A minimal authoritative DNS server on a loopback UDP port, answering TXT and A queries from a
//! table, so dns-01 (and the address lookups of the other challenges) go over a real resolver
//! round trip. NXDOMAIN for a name it has nothing for.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

#[derive(Clone)]
pub struct TxtServer {
    pub addr: SocketAddr,
    records: Arc<Mutex<Records>>,
}

/// What the server answers, by lower-case name without the trailing dot.
#[derive(Default)]
struct Records {
    txt: HashMap<String, Vec<String>>,
    a: HashMap<String, Vec<Ipv4Addr>>,
}

impl TxtServer {
    pub async fn start() -> TxtServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let records: Arc<Mutex<Records>> = Arc::default();
        let table = records.clone();
        actix_web::rt::spawn(async move {
            let mut buf = [0u8; 512];
            // Bounded: a test never sends more than a few hundred queries.
            for _ in 0..10_000 {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let reply = answer(&buf[..n], &table.lock().unwrap());
                if let Some(reply) = reply {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        TxtServer { addr, records }
    }

    /// Publishes a TXT record at `name` (no trailing dot), adding to any already there.
    pub fn publish(&self, name: &str, value: &str) {
        self.records.lock().unwrap().txt.entry(name.to_ascii_lowercase()).or_default().push(value.to_string());
    }

    /// Publishes an A record at `name`, after any already there (answered in that order).
    pub fn publish_address(&self, name: &str, ip: Ipv4Addr) {
        self.records.lock().unwrap().a.entry(name.to_ascii_lowercase()).or_default().push(ip);
    }
}

fn answer(query: &[u8], table: &Records) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question_end = pos + 4;
    let name = labels.join(".");
    let known = table.txt.contains_key(&name) || table.a.contains_key(&name);
    // Each answer's type and data.
    let answers: Vec<(u16, Vec<u8>)> = match qtype {
        16 => table.txt.get(&name).into_iter().flatten().map(|v| (16, txt_data(v))).collect(),
        1 => table.a.get(&name).into_iter().flatten().map(|ip| (1, ip.octets().to_vec())).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[..2]);
    // QR, opcode 0, AA, RD copied; RA; RCODE NXDOMAIN when the name is unknown.
    let rd = query[2] & 0x01;
    out.push(0x84 | rd);
    out.push(if known { 0x80 } else { 0x83 });
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    for (rtype, data) in answers {
        // The name (a pointer to the question's), the type, class IN and a TTL of 60 s.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}

/// A TXT record's data: one character-string.
fn txt_data(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut data = Vec::with_capacity(bytes.len() + 1);
    data.push(bytes.len() as u8);
    data.extend_from_slice(bytes);
    data
}
