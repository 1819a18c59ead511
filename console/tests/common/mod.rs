//! Driving the console's router as a browser would: requests from an
//! address, replies with their cookies, the sign-in form.
#![allow(dead_code)]

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

pub struct Reply {
    pub status: StatusCode,
    pub location: String,
    pub cookies: Vec<String>,
    pub body: String,
}

pub async fn send(c: &Arc<console::Console>, ip: [u8; 4], req: Request<Body>) -> Reply {
    let mut req = req;
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    let resp = console::router(Arc::clone(c)).oneshot(req).await.unwrap();
    let status = resp.status();
    let location = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let cookies = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .collect();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    Reply { status, location, cookies, body: String::from_utf8_lossy(&body).into_owned() }
}

pub fn cookie_value(r: &Reply, name: &str) -> Option<String> {
    r.cookies.iter().find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_string)).filter(|v| !v.is_empty())
}

pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The sign-in form, then the sign-in: the reply to the POST.
pub async fn login(c: &Arc<console::Console>, ip: [u8; 4], user: &str, password: &str) -> Reply {
    let form = send(c, ip, Request::get("/login").body(Body::empty()).unwrap()).await;
    let token = cookie_value(&form, "citysoc_login").unwrap();
    let body = format!("csrf={token}&user={}&password={}", enc(user), enc(password));
    let req = Request::post("/login")
        .header(header::COOKIE, format!("citysoc_login={token}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT_LANGUAGE, "en")
        .body(Body::from(body))
        .unwrap();
    send(c, ip, req).await
}

pub async fn get(c: &Arc<console::Console>, session: &str, path: &str) -> Reply {
    let req = Request::get(path)
        .header(header::COOKIE, format!("citysoc_session={session}"))
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .unwrap();
    send(c, [127, 0, 0, 1], req).await
}
