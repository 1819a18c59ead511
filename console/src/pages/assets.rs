//! Static files of the console.

use super::*;

pub(super) const ASSETS: [(&str, &str, &str); 3] = [
    ("app.css", "text/css; charset=utf-8", include_str!("../../assets/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../assets/app.js")),
    (
        "vendor/chart-4.6.1.umd.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/vendor/chart-4.6.1.umd.min.js"),
    ),
];

pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == file) {
        Some((_, ctype, body)) => {
            ([(header::CONTENT_TYPE, *ctype), (header::CACHE_CONTROL, "public, max-age=3600")], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
