//! Refusing cross-site requests, and the headers every dashboard and portal page carries.
//!
//! Every state-changing request is a POST whose `Origin` (or, when a browser sends none,
//! `Referer`) must be this service's own origin: the request's `Host`, or
//! `WEBHOOKD_PUBLIC_URL`. A form on another site, even on another port of the same host (to
//! which a browser still sends a `SameSite=Strict` cookie), gets 403 before anything is read
//! or changed. Browsers always send `Origin` on a cross-origin POST and page scripts cannot
//! forge it, so no token has to be threaded through the forms.

use poem::middleware::SetHeader;
use poem::Request;

use super::UiError;
use crate::config::Settings;

/// Ok if the request comes from a page of this service.
pub(crate) fn check_same_origin(request: &Request, settings: &Settings) -> Result<(), UiError> {
    let source = request
        .header("origin")
        .filter(|origin| *origin != "null")
        .or_else(|| request.header("referer"))
        .ok_or_else(|| UiError::Forbidden("this form must be sent from webhookd's own pages (no Origin or Referer)".into()))?;
    let source_authority = url::Url::parse(source).ok().and_then(|url| authority(&url));
    let own = request.header("host").map(str::to_ascii_lowercase);
    let public = settings.http.public_url.as_ref().and_then(authority);
    match source_authority {
        Some(source) if Some(&source) == own.as_ref() || Some(&source) == public.as_ref() => Ok(()),
        _ => Err(UiError::Forbidden("cross-site request refused: this form must be sent from webhookd's own pages".into())),
    }
}

/// `host[:port]` as a browser sends it in `Host` (no port when it is the scheme's default).
fn authority(url: &url::Url) -> Option<String> {
    let host = url.host_str()?.to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// The headers of every dashboard and portal response: no script runs at all (the pages
/// have none, so an escaping mistake still cannot run one), no framing (clickjacking), and
/// no `Referer` to other sites (portal URLs are credentials). `same-origin` rather than
/// `no-referrer`: under `no-referrer` browsers send `Origin: null` even to the same origin,
/// which the origin check must refuse.
pub(crate) fn security_headers() -> SetHeader {
    SetHeader::new()
        .overriding(
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        .overriding("x-frame-options", "DENY")
        .overriding("x-content-type-options", "nosniff")
        .overriding("referrer-policy", "same-origin")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::from_variables(&[]).unwrap()
    }

    fn post(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().method(poem::http::Method::POST).uri_str("/ui/logout");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.finish()
    }

    #[test]
    fn a_post_from_the_same_origin_passes() {
        let request = post(&[("host", "127.0.0.1:8000"), ("origin", "http://127.0.0.1:8000")]);
        assert!(check_same_origin(&request, &settings()).is_ok());
        let request = post(&[("host", "127.0.0.1:8000"), ("referer", "http://127.0.0.1:8000/ui/subscriptions")]);
        assert!(check_same_origin(&request, &settings()).is_ok());
    }

    #[test]
    fn a_post_from_another_origin_or_from_nowhere_is_refused() {
        for headers in [
            &[("host", "127.0.0.1:8000"), ("origin", "http://127.0.0.1:9000")][..],
            &[("host", "127.0.0.1:8000"), ("origin", "http://evil.example")],
            &[("host", "127.0.0.1:8000"), ("origin", "null")],
            &[("host", "127.0.0.1:8000"), ("referer", "http://evil.example/127.0.0.1:8000")],
            &[("host", "127.0.0.1:8000")],
        ] {
            assert!(check_same_origin(&post(headers), &settings()).is_err(), "{headers:?}");
        }
    }
}
