//! A small HTTP/1.1 client over hyper, with a cookie jar.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{HOST, HeaderMap, HeaderValue, SET_COOKIE};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text (lossy).
    pub body: String,
}

impl TestResponse {
    /// Every `Set-Cookie` header value.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// An HTTP client that keeps cookies: a `Set-Cookie` stores or replaces a
/// cookie, and `Max-Age=0` removes it. Clones share the jar, like tabs of
/// one browser.
#[derive(Debug, Clone)]
pub struct Client {
    addr: SocketAddr,
    jar: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Client {
    /// A client for the server at `addr`, with an empty jar.
    pub fn new(addr: SocketAddr) -> Self {
        Client {
            addr,
            jar: Arc::default(),
        }
    }

    /// The value of a cookie in the jar.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(name).cloned()
    }

    /// Puts a cookie in the jar, as if the server had set it.
    pub fn set_cookie(&self, name: &str, value: &str) {
        self.jar
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
    }

    /// Empties the jar.
    pub fn clear_cookies(&self) {
        self.jar.lock().unwrap().clear();
    }

    /// A new client with a copy of this jar.
    pub fn fork(&self) -> Client {
        Client {
            addr: self.addr,
            jar: Arc::new(Mutex::new(self.jar.lock().unwrap().clone())),
        }
    }

    /// `GET path` with the jar's cookies; the response updates the jar.
    pub async fn get(&self, path: &str) -> TestResponse {
        let cookie = {
            let jar = self.jar.lock().unwrap();
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let cookie = (!cookie.is_empty()).then(|| cookie.into_bytes());
        let response = self.get_raw(path, cookie.as_deref()).await;
        self.absorb(&response);
        response
    }

    /// `GET path` with exactly this `Cookie` header (any bytes), or none;
    /// the jar is neither used nor updated.
    pub async fn get_raw(&self, path: &str, cookie: Option<&[u8]>) -> TestResponse {
        let headers: Vec<(String, Vec<u8>)> = cookie
            .map(|c| vec![("cookie".to_owned(), c.to_vec())])
            .unwrap_or_default();
        self.send(path, &headers).await
    }

    /// `GET path` with these extra headers and no cookies.
    pub async fn get_with(&self, path: &str, headers: &[(String, String)]) -> TestResponse {
        let headers: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        self.send(path, &headers).await
    }

    async fn send(&self, path: &str, headers: &[(String, Vec<u8>)]) -> TestResponse {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to the test server");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(conn);
        let mut request = Request::get(path).header(HOST, self.addr.to_string());
        for (name, value) in headers {
            request = request.header(
                name.as_str(),
                HeaderValue::from_bytes(value).expect("a header-safe value"),
            );
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::new())).expect("request"))
            .await
            .expect("send the request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("read the body")
            .to_bytes();
        TestResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    fn absorb(&self, response: &TestResponse) {
        let mut jar = self.jar.lock().unwrap();
        for line in response.set_cookies() {
            let mut parts = line.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let removed = parts.any(|a| a.eq_ignore_ascii_case("Max-Age=0"));
            if removed {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }
}
