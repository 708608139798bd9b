//! A subscriber's endpoint: an absolute http(s) URL, checked before it is stored.

use std::net::IpAddr;

use reqwest::Url;

/// Longest accepted target URL, in bytes.
pub const MAX_TARGET_URL_LEN: usize = 2048;

/// A validated absolute http or https URL with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(Url);

impl TargetUrl {
    /// Parses `text`, refusing relative URLs, other schemes, credentials in the URL and
    /// overlong input.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_TARGET_URL_LEN {
            return Err(format!("target_url is longer than {MAX_TARGET_URL_LEN} bytes"));
        }
        // PostgreSQL's text refuses it, and the URL parser would keep it in a path.
        if text.contains('\0') {
            return Err("target_url must not contain the NUL character".into());
        }
        let url = Url::parse(text).map_err(|e| format!("target_url is not an absolute URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("target_url must use http or https, not `{}`", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("target_url has no host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("target_url must not carry credentials; use secret_key to authenticate".into());
        }
        Ok(Self(url))
    }

    /// The host when it is written as an IP address (no DNS lookup needed to judge it).
    pub fn ip_literal(&self) -> Option<IpAddr> {
        match self.0.host()? {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        }
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// Host and port to resolve, with the scheme's default port filled in.
    pub fn host_and_port(&self) -> (String, u16) {
        let host = self.0.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        (host, self.0.port_or_known_default().unwrap_or(80))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_http_and_https_urls_are_accepted() {
        assert!(TargetUrl::parse("https://example.com/hooks?x=1").is_ok());
        assert!(TargetUrl::parse("http://127.0.0.1:9000/").is_ok());
    }

    #[test]
    fn other_urls_are_refused_with_a_reason() {
        assert!(TargetUrl::parse("/relative").unwrap_err().contains("absolute"));
        assert!(TargetUrl::parse("ftp://example.com").unwrap_err().contains("http"));
        assert!(TargetUrl::parse("https://user:pw@example.com").unwrap_err().contains("credentials"));
        let long = format!("https://example.com/{}", "a".repeat(MAX_TARGET_URL_LEN));
        assert!(TargetUrl::parse(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn every_ipv4_spelling_that_resolvers_accept_is_read_as_the_address_it_means() {
        for spelling in ["127.1", "0177.0.0.1", "017700000001", "0x7f.0.0.1", "2130706433", "0x7f000001", "127.0.1"] {
            let url = TargetUrl::parse(&format!("http://{spelling}/hook")).unwrap();
            assert_eq!(url.ip_literal(), Some("127.0.0.1".parse().unwrap()), "{spelling}");
        }
        let url = TargetUrl::parse("http://[::ffff:7f00:1]/hook").unwrap();
        assert_eq!(url.ip_literal(), Some("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn ip_literals_are_recognised() {
        let url = TargetUrl::parse("http://[::1]:8080/x").unwrap();
        assert_eq!(url.ip_literal(), Some("::1".parse().unwrap()));
        assert_eq!(url.host_and_port(), ("::1".to_owned(), 8080));
        assert_eq!(TargetUrl::parse("https://example.com").unwrap().ip_literal(), None);
    }
}
