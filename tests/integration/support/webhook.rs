//! A webhook receiver on 127.0.0.1: accepts HTTP POSTs (Content-Length bodies), answers 200,
//! keeps every JSON body. Enough for keepsake's alerts (reqwest, HTTP/1.1).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct Receiver {
    pub url: String,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://127.0.0.1:{}/hook/SECRET-TOKEN-123",
            listener.local_addr().expect("addr").port()
        );
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let ev = ev.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().expect("clone"));
                    let mut w = conn;
                    loop {
                        let mut len = 0usize;
                        let mut line = String::new();
                        // Request line and headers.
                        loop {
                            line.clear();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let l = line.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = l.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    len = v.trim().parse().unwrap_or(0);
                                }
                            }
                        }
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).is_err() {
                            return;
                        }
                        if let Ok(v) = serde_json::from_slice(&body) {
                            ev.lock().expect("lock").push(v);
                        }
                        if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { url, events }
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        self.events.lock().expect("lock").clone()
    }

    /// Events named `name`.
    pub fn named(&self, name: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Wait until `n` events named `name` arrived.
    pub fn wait_for(
        &self,
        name: &str,
        n: usize,
        limit: std::time::Duration,
    ) -> Vec<serde_json::Value> {
        let t = std::time::Instant::now();
        loop {
            let v = self.named(name);
            if v.len() >= n {
                return v;
            }
            assert!(
                t.elapsed() < limit,
                "waited {limit:?} for {n} {name} event(s); got: {:#?}",
                self.events()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
