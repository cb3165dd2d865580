//! The console's credentials: the server's own read and write tokens, presented as
//! `Authorization: Bearer <token>` (scripts) or as the `facedex_token` cookie that signing in
//! sets (the browser, whose `<img>` requests cannot carry a header). The cookie is `HttpOnly`
//! (no script reads it), `SameSite=Strict` (no other site's page sends it) and `Secure` over
//! TLS; writes also need a JSON body, which no cross-site form can send without a preflight.
//! The handlers then check the token exactly as they do for gRPC.

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use tonic::metadata::{MetadataMap, MetadataValue};

/// The cookie that carries the token.
pub(crate) const TOKEN_COOKIE: &str = "facedex_token";

/// The credentials `headers` carry, as the gRPC metadata the handlers check: the
/// `Authorization` header, else the token cookie.
pub(crate) fn credentials(headers: &HeaderMap) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| cookie_token(headers).map(|token| format!("Bearer {token}")));
    if let Some(value) = bearer.and_then(|bearer| MetadataValue::try_from(bearer.as_str()).ok()) {
        metadata.insert("authorization", value);
    }
    metadata
}

/// The token the cookie carries, when the request has one. Tokens are printable ASCII but may
/// hold `;` or `"`, which a cookie value may not: the cookie carries them in hexadecimal.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    let hex = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| value)?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|start| u8::from_str_radix(hex.get(start..start + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The `Set-Cookie` value that signs in with `token` (`None` signs out).
pub(crate) fn token_cookie(token: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(token) => {
            let hex: String = token.bytes().map(|byte| format!("{byte:02x}")).collect();
            format!("{TOKEN_COOKIE}={hex}; Path=/; HttpOnly; SameSite=Strict{secure}")
        }
        None => format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().expect("header value"));
        }
        headers
    }

    fn bearer(metadata: &MetadataMap) -> Option<&str> {
        metadata.get("authorization").and_then(|value| value.to_str().ok())
    }

    #[test]
    fn the_header_wins_over_the_cookie_and_the_cookie_is_found_among_others() {
        let both = headers(&[("authorization", "Bearer from-header"), ("cookie", "facedex_token=6b")]);
        assert_eq!(bearer(&credentials(&both)), Some("Bearer from-header"));
        let signed_in = token_cookie(Some("s3;cr\"t"), false);
        let value = signed_in.split(';').next().expect("name=value");
        let cookie = headers(&[("cookie", &format!("theme=dark; {value}; other=1"))]);
        assert_eq!(bearer(&credentials(&cookie)), Some("Bearer s3;cr\"t"));
        assert_eq!(bearer(&credentials(&headers(&[("cookie", "facedex_token=zz")]))), None);
        assert_eq!(bearer(&credentials(&headers(&[("cookie", "facedex_token=")]))), None);
        assert_eq!(bearer(&credentials(&HeaderMap::new())), None);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let cookie = token_cookie(Some("t"), true);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.ends_with("Secure"));
        assert!(token_cookie(None, false).contains("Max-Age=0"));
    }
}
