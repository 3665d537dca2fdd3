//! A minimal authoritative DNS server on a loopback UDP port, answering TXT queries from a
//! table, so dns-01 is validated over a real resolver round trip. NXDOMAIN for anything else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

#[derive(Clone)]
pub struct TxtServer {
    pub addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl TxtServer {
    pub async fn start() -> TxtServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let records: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
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
        self.records.lock().unwrap().entry(name.to_ascii_lowercase()).or_default().push(value.to_string());
    }
}

fn answer(query: &[u8], table: &HashMap<String, Vec<String>>) -> Option<Vec<u8>> {
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
    let values = table.get(&name);
    let answers: Vec<&String> = match (qtype, values) {
        (16, Some(values)) => values.iter().collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[..2]);
    // QR, opcode 0, AA, RD copied; RA; RCODE NXDOMAIN when the name is unknown.
    let rd = query[2] & 0x01;
    out.push(0x84 | rd);
    out.push(if values.is_some() { 0x80 } else { 0x83 });
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    for value in answers {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60]);
        let bytes = value.as_bytes();
        out.extend_from_slice(&((bytes.len() + 1) as u16).to_be_bytes());
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    Some(out)
}
