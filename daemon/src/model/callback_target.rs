//! Callback targets: the strict syntax of a `callback_url`, per-platform host allow-lists,
//! and the address ranges a callback must not reach unless the platform allows it.
//!
//! Pure logic, no IO. Task creation parses the URL and checks its host here (an IP literal
//! in a refused range, a host off the platform's allow-list or a malformed host is
//! `bad_request`); delivery checks every address the name resolves to here before it
//! connects, and then connects only to checked addresses — so a name that resolves to a
//! public address at creation and to `169.254.169.254` at delivery (DNS rebinding) is
//! refused all the same.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest accepted `callback_url`, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// A callback host: an IP literal or a DNS name (lowercase ASCII, validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// A parsed `https://host[:port]/path` (port 443 unless given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackUrl {
    pub host: Host,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl CallbackUrl {
    /// Parse strictly: `https://` only (lowercase), no user info, no fragment, a valid
    /// host, a port in 1..=65535, a path of visible ASCII.
    ///
    /// `http::Uri` splits the URL and refuses what is no URI at all; every part is then
    /// checked here, because a URI may be more than a callback target may: `http` reads
    /// the scheme in any case, drops a fragment, reads `:+443` as 443 and an unreadable
    /// port (`:`, `:65536`) as none, and lets non-ASCII and `\\` into the path.
    pub fn parse(url: &str) -> Result<CallbackUrl, String> {
        if url.len() > MAX_URL_LEN {
            return Err(format!("is longer than {MAX_URL_LEN} bytes"));
        }
        if !url.starts_with("https://") {
            return Err("must be an https:// URL".into());
        }
        let uri: http::Uri = url.parse().map_err(|e| not_a_uri(url, e))?;
        // An absolute URI always has an authority (maybe without a host) and a path.
        let authority = uri.authority().ok_or("host is empty")?;
        if authority.as_str().contains('@') {
            return Err("must not carry user info".into());
        }
        let (host, port) = split_authority(authority)?;
        let host = parse_host(host)?;
        // Neither the scheme nor the authority can hold a `#`: it starts the fragment,
        // which `http` would drop without a word.
        if url.contains('#') {
            return Err(format!("path has a character that is not allowed ({:?})", '#'));
        }
        // `https://gw?x` asks for `/?x`.
        let path = uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
        let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
        if let Some(c) = path.chars().find(|c| !c.is_ascii_graphic() || *c == '\\') {
            return Err(format!("path has a character that is not allowed ({c:?})"));
        }
        Ok(CallbackUrl { host, port, path })
    }

    /// The `Host` header: the host, with the port unless it is 443.
    pub fn host_header(&self) -> String {
        match self.port {
            443 => self.host.to_string(),
            p => format!("{}:{p}", self.host),
        }
    }
}

/// Why `http::Uri` refused `url`: a character no URL may carry (a space, a control,
/// non-ASCII, `\\`) by name, else its own reason.
fn not_a_uri(url: &str, e: http::uri::InvalidUri) -> String {
    match url.chars().find(|c| !c.is_ascii_graphic() || *c == '\\') {
        Some(c) => format!("has a character that is not allowed ({c:?})"),
        None => format!("is not a valid URL ({e})"),
    }
}

/// The host (an IPv6 address with its brackets) and port of an authority without user
/// info. `http` delimits the host; the port's text is read here, strictly.
fn split_authority(authority: &http::uri::Authority) -> Result<(&str, u16), String> {
    let host = authority.host();
    let port = match &authority.as_str()[host.len()..] {
        "" => None,
        // After a name or an IPv4 address `http` ends the host at the `:`; only `]` can be
        // followed by anything else.
        tail => Some(tail.strip_prefix(':').ok_or("unexpected text after the IPv6 address")?),
    };
    let port = match port {
        None => 443,
        Some(p) => {
            let n: u16 = (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
                .ok_or_else(|| format!("port `{p}` is not a number in 1..=65535"))?;
            if n == 0 {
                return Err("port 0 is not allowed".into());
            }
            n
        }
    };
    Ok((host, port))
}

/// Parse a host as it appears in a URL authority: `[v6]`, a dotted-quad IPv4 address, or
/// a DNS name of letters, digits and hyphens (labels 1..=63, at most 253 in all, no label
/// starting or ending with a hyphen). Names are lowercased. A name that ends in a number
/// (`127.1`, `0x7f.1`, `2130706433`) is refused: resolvers read such names as IPv4
/// addresses in forms the checks here would not see.
pub fn parse_host(s: &str) -> Result<Host, String> {
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("IPv6 address lacks its closing ]")?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| format!("`{inner}` is not an IPv6 address"));
    }
    if s.is_empty() {
        return Err("host is empty".into());
    }
    if let Ok(ip) = s.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    if s.len() > 253 {
        return Err("host name is longer than 253 characters".into());
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.')) {
        return Err(format!(
            "host `{s}` has a character that is not allowed ({c:?}); names are letters, digits, hyphens and dots"
        ));
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Err(format!("host `{s}` has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("host `{s}` has a label longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("host `{s}` has a label starting or ending with a hyphen"));
        }
    }
    let last = s.rsplit('.').next().unwrap_or(s);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    if last.bytes().all(|b| b.is_ascii_digit()) || hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(format!("host `{s}` is not a dotted-quad IPv4 address nor a name"));
    }
    Ok(Host::Name(s.to_ascii_lowercase()))
}

/// An allow-list entry: an exact host, or `*.suffix` for any name below `suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(Host),
    Below(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        match s.strip_prefix("*.") {
            Some(suffix) => match parse_host(suffix)? {
                Host::Name(n) => Ok(HostPattern::Below(n)),
                Host::Ip(_) => Err(format!("`{s}`: a wildcard needs a name, not an address")),
            },
            None => parse_host(s).map(HostPattern::Exact),
        }
    }

    pub fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (HostPattern::Exact(h), _) => h == host,
            (HostPattern::Below(suffix), Host::Name(n)) => {
                n.len() > suffix.len() + 1
                    && n.ends_with(suffix.as_str())
                    && n.as_bytes()[n.len() - suffix.len() - 1] == b'.'
            }
            (HostPattern::Below(_), Host::Ip(_)) => false,
        }
    }
}

/// Why an address is not a callback target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Loopback, private, link-local and similar: refused unless the platform allows
    /// private callbacks.
    Private(&'static str),
    /// Not a unicast destination at all (unspecified, multicast, broadcast, reserved):
    /// always refused.
    Never(&'static str),
}

impl Refusal {
    pub fn range(self) -> &'static str {
        match self {
            Refusal::Private(r) | Refusal::Never(r) => r,
        }
    }
}

fn v4_in(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn v6_in(ip: Ipv6Addr, net: Ipv6Addr, bits: u32) -> bool {
    let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
    u128::from(ip) & mask == u128::from(net) & mask
}

/// The range `ip` falls in, if callbacks may not go there (by default).
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    use Refusal::{Never, Private};
    const RANGES: &[([u8; 4], u32, Refusal)] = &[
        ([0, 0, 0, 0], 8, Never("unspecified (0.0.0.0/8)")),
        ([10, 0, 0, 0], 8, Private("private (10.0.0.0/8, RFC 1918)")),
        ([100, 64, 0, 0], 10, Private("shared address space (100.64.0.0/10, CGNAT)")),
        ([127, 0, 0, 0], 8, Private("loopback (127.0.0.0/8)")),
        ([169, 254, 0, 0], 16, Private("link-local (169.254.0.0/16)")),
        ([172, 16, 0, 0], 12, Private("private (172.16.0.0/12, RFC 1918)")),
        ([192, 0, 0, 0], 24, Private("IETF protocol assignments (192.0.0.0/24)")),
        ([192, 0, 2, 0], 24, Private("documentation (192.0.2.0/24)")),
        ([192, 168, 0, 0], 16, Private("private (192.168.0.0/16, RFC 1918)")),
        ([198, 18, 0, 0], 15, Private("benchmarking (198.18.0.0/15)")),
        ([198, 51, 100, 0], 24, Private("documentation (198.51.100.0/24)")),
        ([203, 0, 113, 0], 24, Private("documentation (203.0.113.0/24)")),
        ([224, 0, 0, 0], 4, Never("multicast (224.0.0.0/4)")),
        ([255, 255, 255, 255], 32, Never("broadcast (255.255.255.255)")),
        ([240, 0, 0, 0], 4, Never("reserved (240.0.0.0/4)")),
    ];
    RANGES.iter().find(|(net, bits, _)| v4_in(ip, *net, *bits)).map(|(_, _, r)| *r)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    use Refusal::{Never, Private};
    let net = |s: &str| s.parse::<Ipv6Addr>().expect("a valid range");
    let embedded_v4 = |shift: u32| Ipv4Addr::from((u128::from(ip) >> shift) as u32);
    // Addresses that carry an IPv4 address are judged by it, keeping its kind of refusal.
    let carried = |v4: Ipv4Addr, what: &'static str| {
        classify_v4(v4).map(|r| match r {
            Private(_) => Private(what),
            Never(_) => Never(what),
        })
    };
    if ip.is_unspecified() {
        return Some(Never("unspecified (::)"));
    }
    if ip.is_loopback() {
        return Some(Private("loopback (::1)"));
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return carried(v4, "IPv4-mapped IPv6 of a refused IPv4 range (::ffff:0:0/96)");
    }
    if v6_in(ip, net("64:ff9b::"), 96) {
        return carried(embedded_v4(0), "NAT64 of a refused IPv4 range (64:ff9b::/96)");
    }
    if v6_in(ip, net("2002::"), 16) {
        return carried(embedded_v4(80), "6to4 of a refused IPv4 range (2002::/16)");
    }
    let ranges: [(&str, u32, Refusal); 10] = [
        ("::", 96, Never("IPv4-compatible IPv6 (::/96, deprecated)")),
        ("64:ff9b:1::", 48, Private("local-use NAT64 (64:ff9b:1::/48)")),
        ("100::", 64, Never("discard-only (100::/64)")),
        ("2001:db8::", 32, Private("documentation (2001:db8::/32)")),
        ("2001::", 23, Private("IETF protocol assignments (2001::/23)")),
        ("3fff::", 20, Private("documentation (3fff::/20)")),
        ("fc00::", 7, Private("unique local (fc00::/7)")),
        ("fe80::", 10, Private("link-local (fe80::/10)")),
        ("fec0::", 10, Private("site-local (fec0::/10, deprecated)")),
        ("ff00::", 8, Never("multicast (ff00::/8)")),
    ];
    ranges.iter().find(|(n, bits, _)| v6_in(ip, net(n), *bits)).map(|(_, _, r)| *r)
}

/// Names that always mean this machine (RFC 6761): refused like loopback addresses.
fn is_local_name(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

/// One platform's callback rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// `None`: any host; `Some`: only these (an empty list refuses every callback).
    pub hosts: Option<Vec<HostPattern>>,
    /// Allow loopback, private, link-local and similar ([`Refusal::Private`]) targets.
    pub allow_private: bool,
}

impl TargetPolicy {
    /// What can be decided without resolving: the allow-list, an IP literal's range,
    /// `localhost`.
    /// (The range first: being on the allow-list does not make an address public.)
    pub fn check_url(&self, url: &CallbackUrl) -> Result<(), String> {
        match &url.host {
            Host::Ip(ip) => self.check_addr(*ip)?,
            Host::Name(n) if is_local_name(n) && !self.allow_private => {
                return Err(format!(
                    "host {n} is this machine (loopback); private callback targets are not allowed for this platform"
                ));
            }
            Host::Name(_) => {}
        }
        match &self.hosts {
            Some(hosts) if !hosts.iter().any(|p| p.matches(&url.host)) => {
                Err(format!("host {} is not on this platform's callback allow-list", url.host))
            }
            _ => Ok(()),
        }
    }

    /// An address the callback would connect to.
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), String> {
        match classify(ip) {
            None => Ok(()),
            Some(Refusal::Private(_)) if self.allow_private => Ok(()),
            Some(Refusal::Private(range)) => {
                Err(format!("address {ip} is {range}; private callback targets are not allowed for this platform"))
            }
            Some(Refusal::Never(range)) => Err(format!("address {ip} is {range}, never a callback target")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Result<CallbackUrl, String> {
        CallbackUrl::parse(s)
    }

    #[test]
    fn callback_urls_parse_strictly() {
        let u = url("https://GW.example.cn:9443/cb?x=1").unwrap();
        assert_eq!((u.host.clone(), u.port, u.path.as_str()), (Host::Name("gw.example.cn".into()), 9443, "/cb?x=1"));
        assert_eq!(u.host_header(), "gw.example.cn:9443");
        let u = url("https://127.0.0.1/").unwrap();
        assert_eq!((u.host, u.port), (Host::Ip("127.0.0.1".parse().unwrap()), 443));
        let u = url("https://[2001:4860::8888]:8443").unwrap();
        assert_eq!((u.host.to_string(), u.port, u.path.as_str()), ("[2001:4860::8888]".into(), 8443, "/"));
        assert_eq!(url("https://gw?q").unwrap().path, "/?q");
        for bad in [
            "http://gw/cb",
            "HTTPS://gw/",
            "https://:80/",
            "https://a b/",
            "https:///x",
            "https://gw:/",
            "https://gw:0/",
            "https://gw:65536/",
            "https://gw:+443/",
            "https://gw:443:443/",
            "https://user@gw/",
            "https://user:pw@gw/",
            "https://gw/a b",
            "https://gw/x#frag",
            "https://gw/\u{7f}",
            "https://gw/é",
            "https://gw\\evil/",
            "https://a..b/",
            "https://.a/",
            "https://a./",
            "https://-a.cn/",
            "https://a-.cn/",
            "https://a_b.cn/",
            "https://exämple.cn/",
            "https://[::1/",
            "https://[::1]x/",
            "https://[fe80::1%25eth0]/",
            "https://[127.0.0.1]/",
            "https://127.1/",
            "https://2130706433/",
            "https://0x7f.0.0.1/",
            "https://127.000.0.1/",
            "https://1.2.3.4.5/",
        ] {
            assert!(url(bad).is_err(), "{bad} was accepted");
        }
        assert!(url(&format!("https://gw/{}", "a".repeat(MAX_URL_LEN))).is_err());
        assert!(url(&format!("https://{}.cn/", "a".repeat(64))).is_err());
        assert!(url(&format!("https://{}.cn/", "a".repeat(63))).is_ok());
        assert!(url("https://1.2.3.4.example/").is_ok());
    }

    #[test]
    fn callback_url_refusals_say_why() {
        let why = |s: &str| url(s).unwrap_err();
        for (bad, reason) in [
            ("http://gw/cb", "must be an https:// URL"),
            ("HTTPS://gw/", "must be an https:// URL"),
            ("https://user@gw/", "must not carry user info"),
            ("https://user:pw@gw:443/", "must not carry user info"),
            ("https://:80/", "host is empty"),
            ("https://gw:/", "port `` is not a number in 1..=65535"),
            ("https://gw:+443/", "port `+443` is not a number in 1..=65535"),
            ("https://gw:65536/", "port `65536` is not a number in 1..=65535"),
            ("https://gw:0/", "port 0 is not allowed"),
            ("https://[::1]x/", "unexpected text after the IPv6 address"),
            ("https://[127.0.0.1]/", "`127.0.0.1` is not an IPv6 address"),
            (
                "https://a_b.cn/",
                "host `a_b.cn` has a character that is not allowed ('_'); names are letters, digits, hyphens and dots",
            ),
            ("https://127.1/", "host `127.1` is not a dotted-quad IPv4 address nor a name"),
            ("https://gw/x#frag", "path has a character that is not allowed ('#')"),
            ("https://gw#frag", "path has a character that is not allowed ('#')"),
            ("https://gw/é", "path has a character that is not allowed ('é')"),
            ("https://gw/a\\b", "path has a character that is not allowed ('\\\\')"),
            // What `http::Uri` refuses itself: the character when there is one, else its reason.
            ("https://a b/", "has a character that is not allowed (' ')"),
            ("https://gw\\evil/", "has a character that is not allowed ('\\\\')"),
            ("https://gw/\u{7f}", "has a character that is not allowed ('\\u{7f}')"),
        ] {
            assert_eq!(why(bad), reason, "{bad}");
        }
        for bad in ["https://[::1/", "https:///x", "https://gw:443:443/", "https://gw/<x>"] {
            assert!(why(bad).starts_with("is not a valid URL ("), "{bad}: {}", why(bad));
        }
        // What is kept as written: the path and query, percent escapes and all.
        assert_eq!(url("https://gw").unwrap().path, "/");
        assert_eq!(url("https://gw/cb/?a=1&b=%20;c").unwrap().path, "/cb/?a=1&b=%20;c");
        let u = url("https://[::1]:9443/x").unwrap();
        assert_eq!((u.host.to_string(), u.port, u.host_header()), ("[::1]".into(), 9443, "[::1]:9443".into()));
        assert_eq!(url("https://[2001:4860::1]/").unwrap().host_header(), "[2001:4860::1]");
    }

    #[test]
    fn callback_targets_in_private_ranges_are_refused() {
        let refused = [
            "169.254.169.254",
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
        ];
        for ip in refused {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(matches!(classify(ip), Some(Refusal::Private(_))), "{ip}: {:?}", classify(ip));
        }
        let never = [
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "ff02::1",
            "ff05::2",
            "::7f00:1",
            "100::1",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
        ];
        for ip in never {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(matches!(classify(ip), Some(Refusal::Never(_))), "{ip}: {:?}", classify(ip));
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "192.0.1.1",
            "192.169.0.0",
            "198.20.0.0",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "2400:3200::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "fbff:ffff::1",
            "fe7f::1",
        ];
        for ip in public {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(classify(ip), None, "{ip}");
        }

        // The targets of the report, at task creation.
        let strict = TargetPolicy::default();
        for u in [
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]:22/",
            "https://localhost/cb",
            "https://a.localhost/",
        ] {
            let err = strict.check_url(&url(u).unwrap()).unwrap_err();
            assert!(err.contains("not allowed") || err.contains("never"), "{u}: {err}");
        }
        assert!(url("https://a b/").is_err());
        assert!(strict.check_url(&url("https://gw.example.cn/cb").unwrap()).is_ok());
        assert!(strict.check_url(&url("https://[::ffff:7f00:1]/").unwrap()).is_err());

        // A platform that allows private targets still never reaches non-unicast ones.
        let dev = TargetPolicy { hosts: None, allow_private: true };
        for u in ["https://127.0.0.1:9443/cb", "https://[::1]:22/", "https://10.0.0.5/", "https://localhost/"] {
            assert!(dev.check_url(&url(u).unwrap()).is_ok(), "{u}");
        }
        for ip in ["0.0.0.0", "224.0.0.1", "::", "ff02::1"] {
            assert!(dev.check_addr(ip.parse().unwrap()).is_err(), "{ip}");
        }
    }

    #[test]
    fn allow_lists_match_exact_hosts_and_names_below_a_suffix() {
        let policy = TargetPolicy {
            hosts: Some(vec![
                HostPattern::parse("GW.example.cn").unwrap(),
                HostPattern::parse("*.cb.example.cn").unwrap(),
                HostPattern::parse("[2001:4860::1]").unwrap(),
                HostPattern::parse("8.8.4.4").unwrap(),
            ]),
            allow_private: false,
        };
        for ok in [
            "https://gw.example.cn/",
            "https://a.cb.example.cn/",
            "https://x.y.cb.example.cn:8443/",
            "https://[2001:4860::1]/",
            "https://8.8.4.4/",
        ] {
            assert!(policy.check_url(&url(ok).unwrap()).is_ok(), "{ok}");
        }
        for refused in [
            "https://cb.example.cn/",
            "https://evilcb.example.cn/",
            "https://gw.example.cn.evil.cn/",
            "https://example.cn/",
            "https://8.8.8.8/",
            "https://[2001:4860::2]/",
        ] {
            let err = policy.check_url(&url(refused).unwrap()).unwrap_err();
            assert!(err.contains("allow-list"), "{refused}: {err}");
        }
        // On the list and private: still refused without allow_private.
        let listed = TargetPolicy { hosts: Some(vec![HostPattern::parse("10.0.0.5").unwrap()]), allow_private: false };
        assert!(listed.check_url(&url("https://10.0.0.5/").unwrap()).unwrap_err().contains("RFC 1918"));
        // An empty list refuses every callback.
        let none = TargetPolicy { hosts: Some(vec![]), allow_private: true };
        assert!(none.check_url(&url("https://gw.example.cn/").unwrap()).is_err());
        for bad in ["*.1.2.3.4", "*.", "*", "a b", "*.*.cn", ""] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
