//! A real http-01 responder on a loopback port, the way a client's standalone server answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpResponse, HttpServer};

#[derive(Clone)]
pub struct ChallengeResponder {
    pub http_port: u16,
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl ChallengeResponder {
    pub async fn start() -> ChallengeResponder {
        let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let shared = web::Data::from(tokens.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let http_port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            actix_web::App::new().app_data(shared.clone()).route(
                "/.well-known/acme-challenge/{token}",
                web::get().to(
                    |tokens: web::Data<Mutex<HashMap<String, String>>>, token: web::Path<String>| async move {
                        match tokens.lock().unwrap().get(token.as_str()) {
                            Some(value) => match value.strip_prefix("redirect:") {
                                Some(location) => HttpResponse::Found().insert_header(("location", location)).finish(),
                                None => HttpResponse::Ok().body(value.clone()),
                            },
                            None => HttpResponse::NotFound().finish(),
                        }
                    },
                ),
            )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        ChallengeResponder { http_port, tokens }
    }

    pub fn serve(&self, token: &str, key_authorization: &str) {
        self.tokens.lock().unwrap().insert(token.to_string(), key_authorization.to_string());
    }
    /// Answers `token` with a 302 to `location`.
    pub fn redirect(&self, token: &str, location: &str) {
        self.tokens.lock().unwrap().insert(token.to_string(), format!("redirect:{location}"));
    }
}
