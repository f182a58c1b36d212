//! The output formats (`--format`): each a [`Formatter`] with a header, one record per binding
//! (with an optional change operation, for `watch`) and a footer. [`write_document`] writes a
//! whole document from a table (a Snabb binding-table file, say).
//!
//! - `table`: fixed-width columns for a person (UTC times).
//! - `jsonl`: the README's import-file format, one binding per line (`lqctl bulk --format jsonl
//!   > f; leasequeryd --import f` loads it); with an op, `"op":"upsert"|"remove"` is added.
//! - `csv`: a header line, then one line per binding, RFC 4180 (CRLF line ends, quoting).
//! - `snabb`: Snabb lwAFTR configuration text of `snabb-softwire-v3` (`softwire-config {
//!   binding-table { softwire { ... } } }`), bound DHCPv4/DHCP4o6 bindings with a softwire
//!   source only.
//! - `snabb-json`: the same document as RFC 7951 JSON.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::Ipv6Addr;

use leasequery::requestor::lease::{state_name, Lease, V4Lease, V6Lease, V6Lease6, INFINITE};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a person.
    Table,
    /// One binding per line in the import-file format of the README.
    Jsonl,
    /// A header line and one line per binding (RFC 4180).
    Csv,
    /// Snabb lwAFTR binding-table configuration text (snabb-softwire-v3).
    Snabb,
    /// The Snabb binding table as RFC 7951 JSON of snabb-softwire-v3.
    SnabbJson,
}

impl Format {
    /// The Snabb formats, which need `--br-address` and take only bound softwires.
    pub fn is_snabb(self) -> bool {
        matches!(self, Format::Snabb | Format::SnabbJson)
    }
}

/// A change, as `watch` reports it.
#[allow(dead_code)] // `bulk` writes no ops; `watch` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The binding is new or changed.
    Upsert,
    /// The binding is gone (released, expired, removed).
    Remove,
}

impl Op {
    /// `upsert` / `remove`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Remove => "remove",
        }
    }
}

/// What a formatter needs besides the bindings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `--br-address`: the lwAFTR's address, each softwire's `br-address` (Snabb formats).
    pub br_address: Option<Ipv6Addr>,
    /// Records carry an op (`watch`): the csv header gets an `op` column.
    pub ops: bool,
}

/// One output format. A formatter writes each record with one `write_all` of its own buffer.
pub trait Formatter {
    /// Before the first binding (csv header line, the Snabb document's opening).
    fn header(&mut self, out: &mut dyn Write) -> io::Result<()>;
    /// One binding; `op` is `watch`'s change (ignored by the Snabb formats, which describe a
    /// whole table). Returns false when the format has no record for it (a Snabb format and a
    /// binding that is not a bound softwire).
    fn binding(&mut self, out: &mut dyn Write, lease: &Lease, op: Option<Op>) -> io::Result<bool>;
    /// After the last binding (the Snabb document's closing).
    fn footer(&mut self, out: &mut dyn Write) -> io::Result<()>;
}

/// The formatter of `format`. Fails for a Snabb format without `br_address`.
pub fn formatter(format: Format, o: &Options) -> Result<Box<dyn Formatter + Send>, String> {
    if format.is_snabb() && o.br_address.is_none() {
        return Err(format!(
            "--format {} needs --br-address ADDR (every softwire's br-address is mandatory in snabb-softwire-v3)",
            match format {
                Format::Snabb => "snabb",
                _ => "snabb-json",
            }
        ));
    }
    let br = o.br_address.unwrap_or(Ipv6Addr::UNSPECIFIED);
    Ok(match format {
        Format::Table => Box::new(Table::default()),
        Format::Jsonl => Box::new(Jsonl::default()),
        Format::Csv => Box::new(Csv {
            ops: o.ops,
            buf: String::new(),
        }),
        Format::Snabb => Box::new(Snabb {
            br,
            json: false,
            first: true,
            buf: String::new(),
        }),
        Format::SnabbJson => Box::new(Snabb {
            br,
            json: true,
            first: true,
            buf: String::new(),
        }),
    })
}

/// A whole document: header, every binding (no op), footer. Returns the bindings written.
/// (`watch --snabb-conf` rewrites its file from its table with it.)
#[allow(dead_code)]
pub fn write_document<'a>(
    format: Format,
    o: &Options,
    out: &mut dyn Write,
    leases: impl IntoIterator<Item = &'a Lease>,
) -> Result<u64, String> {
    let mut f = formatter(format, o)?;
    let io = |e: io::Error| e.to_string();
    f.header(out).map_err(io)?;
    let mut n = 0;
    for l in leases {
        n += u64::from(f.binding(out, l, None).map_err(io)?);
    }
    f.footer(out).map_err(io)?;
    Ok(n)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Octets as hex digits, `sep` between octets when given; a stack buffer a chunk at a time
/// (one `push_str` per 64 octets, not a `push` per digit).
fn hex_sep(buf: &mut String, b: &[u8], sep: Option<u8>) {
    let mut tmp = [0u8; 192];
    for (n, chunk) in b.chunks(64).enumerate() {
        let mut k = 0;
        for (i, &x) in chunk.iter().enumerate() {
            if let Some(c) = sep.filter(|_| n > 0 || i > 0) {
                tmp[k] = c;
                k += 1;
            }
            tmp[k] = HEX[usize::from(x >> 4)];
            tmp[k + 1] = HEX[usize::from(x & 15)];
            k += 2;
        }
        buf.push_str(std::str::from_utf8(&tmp[..k]).unwrap_or_default());
    }
}

fn hex(buf: &mut String, b: &[u8]) {
    hex_sep(buf, b, None);
}

fn mac(buf: &mut String, b: &[u8]) {
    hex_sep(buf, b, Some(b':'));
}

/// Decimal digits of `v` (what `write!("{v}")` writes, without the formatting machinery: a
/// million bindings spend most of their time here otherwise).
fn push_u32(b: &mut String, mut v: u32) {
    let mut d = [0u8; 10];
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    b.push_str(std::str::from_utf8(&d[i..]).unwrap_or_default());
}

/// An IPv4 address in dotted decimal.
fn push_v4(b: &mut String, a: std::net::Ipv4Addr) {
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            b.push('.');
        }
        push_u32(b, u32::from(o));
    }
}

/// An IPv6 address in RFC 5952 text (what `Display` writes for every address that is not
/// IPv4-mapped or -compatible; those fall back to `Display`).
fn push_v6(b: &mut String, a: Ipv6Addr) {
    let s = a.segments();
    if s[..5] == [0; 5] && (s[5] == 0xffff || (s[5] == 0 && s[6] != 0)) {
        let _ = write!(b, "{a}");
        return;
    }
    // The longest run of two or more zero groups, the first when tied.
    let (mut best, mut best_len, mut i) = (0, 0, 0);
    while i < 8 {
        if s[i] == 0 {
            let start = i;
            while i < 8 && s[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    let group = |b: &mut String, g: u16| {
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let n = (g >> shift) & 15;
            if n != 0 || started || shift == 0 {
                started = true;
                b.push(char::from(HEX[usize::from(n)]));
            }
        }
    };
    if best_len < 2 {
        for (i, &g) in s.iter().enumerate() {
            if i > 0 {
                b.push(':');
            }
            group(b, g);
        }
        return;
    }
    for (i, &g) in s[..best].iter().enumerate() {
        if i > 0 {
            b.push(':');
        }
        group(b, g);
    }
    b.push_str("::");
    for (i, &g) in s[best + best_len..].iter().enumerate() {
        if i > 0 {
            b.push(':');
        }
        group(b, g);
    }
}

fn state(l: &V4Lease) -> &'static str {
    state_name(l.state).unwrap_or("active")
}

/// The link written for a DHCP4o6 binding without a known link nor a softwire source (so that
/// the import still reads it as DHCP4o6), or the v6 binding's unknown link: `::`.
fn link_or_unspecified(l: Option<Ipv6Addr>) -> Ipv6Addr {
    l.unwrap_or(Ipv6Addr::UNSPECIFIED)
}

// ---------------------------------------------------------------- jsonl

#[derive(Default)]
struct Jsonl {
    buf: String,
}

/// The import line of a binding (without the closing brace, so an op can follow).
fn json_v4(b: &mut String, l: &V4Lease) {
    b.push_str("{\"ipv4\":\"");
    push_v4(b, l.addr);
    b.push('"');
    if let Some(p) = l.port_params.filter(|p| p.psid_len > 0) {
        b.push_str(",\"psid\":{\"offset\":");
        push_u32(b, u32::from(p.offset));
        b.push_str(",\"len\":");
        push_u32(b, u32::from(p.psid_len));
        b.push_str(",\"id\":");
        push_u32(b, u32::from(p.psid));
        b.push('}');
    }
    b.push_str(",\"chaddr\":\"");
    mac(b, &l.chaddr);
    b.push('"');
    if let Some(c) = &l.client_id {
        b.push_str(",\"client_id\":\"");
        hex(b, c);
        b.push('"');
    }
    b.push_str(",\"state\":\"");
    b.push_str(state(l));
    b.push_str("\",\"cltt\":");
    push_u32(b, l.cltt);
    b.push_str(",\"expires\":");
    push_u32(b, l.expires);
    for (k, v) in [
        (",\"relay_id\":\"", &l.relay_id),
        (",\"remote_id\":\"", &l.remote_id),
    ] {
        if let Some(v) = v {
            b.push_str(k);
            hex(b, v);
            b.push('"');
        }
    }
    // A DHCP4o6 binding keeps its DHCP4o6 form: its link when the query named one, else `::`
    // when it has no softwire source either.
    if l.link.is_some() || (l.dhcp4o6 && l.softwire.is_none()) {
        b.push_str(",\"link\":\"");
        push_v6(b, link_or_unspecified(l.link));
        b.push('"');
    }
    if let Some(s) = l.softwire {
        b.push_str(",\"softwire_src\":\"");
        push_v6(b, s);
        b.push('"');
    }
}

fn json_v6(b: &mut String, l: &V6Lease) {
    b.push_str("{\"duid\":\"");
    hex(b, &l.duid);
    let _ = write!(b, "\",\"link\":\"{}\"", link_or_unspecified(l.link));
    let list = |b: &mut String, name: &str, v: &[V6Lease6], prefix: bool| {
        if v.is_empty() {
            return;
        }
        let _ = write!(b, ",\"{name}\":[");
        for (i, a) in v.iter().enumerate() {
            if i > 0 {
                b.push(',');
            }
            if prefix {
                let _ = write!(b, "{{\"prefix\":\"{}/{}\"", a.addr, a.len);
            } else {
                let _ = write!(b, "{{\"addr\":\"{}\"", a.addr);
            }
            let _ = write!(
                b,
                ",\"preferred\":{},\"valid\":{}}}",
                a.preferred.min(a.valid),
                a.valid
            );
        }
        b.push(']');
    };
    list(b, "iana", &l.iana, false);
    list(b, "iapd", &l.iapd, true);
    let _ = write!(b, ",\"cltt\":{}", l.cltt);
    for (k, v) in [("relay_id", &l.relay_id), ("remote_id", &l.remote_id)] {
        if let Some(v) = v {
            let _ = write!(b, ",\"{k}\":\"");
            hex(b, v);
            b.push('"');
        }
    }
}

impl Formatter for Jsonl {
    fn header(&mut self, _: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
    fn binding(&mut self, out: &mut dyn Write, lease: &Lease, op: Option<Op>) -> io::Result<bool> {
        let b = &mut self.buf;
        b.clear();
        match lease {
            Lease::V4(l) => json_v4(b, l),
            Lease::V6(l) => json_v6(b, l),
        }
        if let Some(op) = op {
            let _ = write!(b, ",\"op\":\"{}\"", op.name());
        }
        b.push_str("}\n");
        out.write_all(b.as_bytes())?;
        Ok(true)
    }
    fn footer(&mut self, _: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------- csv

struct Csv {
    ops: bool,
    buf: String,
}

const CSV_COLUMNS: &str = "family,ipv4,psid_offset,psid_len,psid,chaddr,client_id,state,cltt,expires,relay_id,remote_id,link,softwire_src,duid,iana,iapd";

/// One RFC 4180 field: quoted when it holds a comma, a quote or a line end.
fn csv_field(b: &mut String, v: &str) {
    if v.contains([',', '"', '\r', '\n']) {
        b.push('"');
        b.push_str(&v.replace('"', "\"\""));
        b.push('"');
    } else {
        b.push_str(v);
    }
}

impl Formatter for Csv {
    fn header(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let op = if self.ops { ",op" } else { "" };
        write!(out, "{CSV_COLUMNS}{op}\r\n")
    }
    fn binding(&mut self, out: &mut dyn Write, lease: &Lease, op: Option<Op>) -> io::Result<bool> {
        let mut f: Vec<String> = vec![String::new(); 17];
        let h = |v: &Option<Vec<u8>>| {
            let mut s = String::new();
            if let Some(v) = v {
                hex(&mut s, v);
            }
            s
        };
        let opt = |v: Option<Ipv6Addr>| v.map(|a| a.to_string()).unwrap_or_default();
        match lease {
            Lease::V4(l) => {
                f[0] = if l.dhcp4o6 { "4o6" } else { "v4" }.into();
                f[1] = l.addr.to_string();
                if let Some(p) = l.port_params {
                    f[2] = p.offset.to_string();
                    f[3] = p.psid_len.to_string();
                    f[4] = p.psid.to_string();
                }
                mac(&mut f[5], &l.chaddr);
                f[6] = h(&l.client_id);
                f[7] = state(l).into();
                f[8] = l.cltt.to_string();
                f[9] = l.expires.to_string();
                f[10] = h(&l.relay_id);
                f[11] = h(&l.remote_id);
                f[12] = opt(l.link);
                f[13] = opt(l.softwire);
            }
            Lease::V6(l) => {
                f[0] = "v6".into();
                f[7] = if lease.active() { "active" } else { "expired" }.into();
                f[8] = l.cltt.to_string();
                f[10] = h(&l.relay_id);
                f[11] = h(&l.remote_id);
                f[12] = opt(l.link);
                hex(&mut f[14], &l.duid);
                // Entries separated by spaces: ADDR/preferred/valid, PREFIX/LEN/preferred/valid.
                let join = |v: &[V6Lease6], prefix: bool| {
                    v.iter()
                        .map(|a| {
                            if prefix {
                                format!("{}/{}/{}/{}", a.addr, a.len, a.preferred, a.valid)
                            } else {
                                format!("{}/{}/{}", a.addr, a.preferred, a.valid)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                f[15] = join(&l.iana, false);
                f[16] = join(&l.iapd, true);
            }
        }
        if self.ops {
            f.push(op.map(Op::name).unwrap_or("").into());
        }
        let b = &mut self.buf;
        b.clear();
        for (i, v) in f.iter().enumerate() {
            if i > 0 {
                b.push(',');
            }
            csv_field(b, v);
        }
        b.push_str("\r\n");
        out.write_all(b.as_bytes())?;
        Ok(true)
    }
    fn footer(&mut self, _: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------- table

#[derive(Default)]
struct Table {
    buf: String,
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC), `never` for infinity, `-` for 0.
pub fn utc(t: u32) -> String {
    if t == INFINITE {
        return "never".into();
    }
    if t == 0 {
        return "-".into();
    }
    let days = i64::from(t / 86_400);
    let secs = t % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

impl Formatter for Table {
    fn header(&mut self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{:<4} {:<39} {:<12} {:<13} {:<20} {:<20} {:<39} CLIENT",
            "FAM", "ADDRESS", "PSID/LEN", "STATE", "CLTT", "EXPIRES", "SOFTWIRE/LINK"
        )
    }
    fn binding(&mut self, out: &mut dyn Write, lease: &Lease, op: Option<Op>) -> io::Result<bool> {
        let b = &mut self.buf;
        b.clear();
        if let Some(op) = op {
            let _ = write!(b, "{:<7}", op.name());
        }
        let mut client = String::new();
        match lease {
            Lease::V4(l) => {
                let psid = l
                    .port_params
                    .map(|p| format!("{}/{}", p.psid, p.psid_len))
                    .unwrap_or_else(|| "-".into());
                let sw = l.softwire.or(l.link).map(|a| a.to_string());
                match &l.client_id {
                    Some(c) => hex(&mut client, c),
                    None => mac(&mut client, &l.chaddr),
                }
                let _ = write!(
                    b,
                    "{:<4} {:<39} {:<12} {:<13} {:<20} {:<20} {:<39} {}",
                    if l.dhcp4o6 { "4o6" } else { "v4" },
                    l.addr.to_string(),
                    psid,
                    state(l),
                    utc(l.cltt),
                    utc(l.expires),
                    sw.as_deref().unwrap_or("-"),
                    client
                );
            }
            Lease::V6(l) => {
                hex(&mut client, &l.duid);
                let first = l
                    .iana
                    .first()
                    .map(|a| a.addr.to_string())
                    .or_else(|| l.iapd.first().map(|p| format!("{}/{}", p.addr, p.len)))
                    .unwrap_or_else(|| "-".into());
                let more = l.iana.len() + l.iapd.len();
                let first = if more > 1 {
                    format!("{first} (+{})", more - 1)
                } else {
                    first
                };
                let end = l
                    .iana
                    .iter()
                    .chain(&l.iapd)
                    .map(|a| {
                        if a.valid == INFINITE {
                            INFINITE
                        } else {
                            l.cltt.saturating_add(a.valid)
                        }
                    })
                    .max()
                    .unwrap_or(0);
                let _ = write!(
                    b,
                    "{:<4} {:<39} {:<12} {:<13} {:<20} {:<20} {:<39} {}",
                    "v6",
                    first,
                    "-",
                    if lease.active() { "active" } else { "expired" },
                    utc(l.cltt),
                    utc(end),
                    l.link.map(|a| a.to_string()).as_deref().unwrap_or("-"),
                    client
                );
            }
        }
        b.push('\n');
        out.write_all(b.as_bytes())?;
        Ok(true)
    }
    fn footer(&mut self, _: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------- snabb

/// A softwire of the binding table: (ipv4, psid, b4-ipv6, psid-length,
/// reserved-ports-bit-count), or `None` when the binding is none (not DHCPv4, not bound, no
/// softwire source).
pub fn softwire(lease: &Lease) -> Option<(std::net::Ipv4Addr, u16, Ipv6Addr, u8, u8)> {
    let Lease::V4(l) = lease else { return None };
    if !lease.active() {
        return None;
    }
    let b4 = l.softwire?;
    // A full (unshared) address is PSID 0 with psid-length 0; option 159's offset becomes
    // reserved-ports-bit-count.
    let (psid, len, offset) = l
        .port_params
        .map(|p| (p.psid, p.psid_len, p.offset))
        .unwrap_or((0, 0, 0));
    Some((l.addr, psid, b4, len, offset))
}

struct Snabb {
    br: Ipv6Addr,
    json: bool,
    first: bool,
    buf: String,
}

impl Formatter for Snabb {
    fn header(&mut self, out: &mut dyn Write) -> io::Result<()> {
        self.first = true;
        if self.json {
            out.write_all(
                b"{\n  \"snabb-softwire-v3:softwire-config\": {\n    \"binding-table\": {\n      \"softwire\": [\n",
            )
        } else {
            out.write_all(b"softwire-config {\n  binding-table {\n")
        }
    }
    fn binding(&mut self, out: &mut dyn Write, lease: &Lease, _: Option<Op>) -> io::Result<bool> {
        let Some((ipv4, psid, b4, len, reserved)) = softwire(lease) else {
            return Ok(false);
        };
        let b = &mut self.buf;
        b.clear();
        if self.json {
            if !self.first {
                b.push_str(",\n");
            }
            let _ = write!(
                b,
                "        {{\"ipv4\": \"{ipv4}\", \"psid\": {psid}, \"b4-ipv6\": \"{b4}\", \"br-address\": \"{}\", \"port-set\": {{\"psid-length\": {len}",
                self.br
            );
            if reserved > 0 {
                let _ = write!(b, ", \"reserved-ports-bit-count\": {reserved}");
            }
            b.push_str("}}");
        } else {
            let _ = write!(
                b,
                "    softwire {{\n      ipv4 {ipv4};\n      psid {psid};\n      b4-ipv6 {b4};\n      br-address {};\n      port-set {{\n        psid-length {len};\n",
                self.br
            );
            if reserved > 0 {
                let _ = writeln!(b, "        reserved-ports-bit-count {reserved};");
            }
            b.push_str("      }\n    }\n");
        }
        self.first = false;
        out.write_all(b.as_bytes())?;
        Ok(true)
    }
    fn footer(&mut self, out: &mut dyn Write) -> io::Result<()> {
        if self.json {
            if !self.first {
                out.write_all(b"\n")?;
            }
            out.write_all(b"      ]\n    }\n  }\n}\n")
        } else {
            out.write_all(b"  }\n}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "-");
        assert_eq!(utc(INFINITE), "never");
        assert_eq!(utc(1), "1970-01-01T00:00:01Z");
        assert_eq!(utc(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(utc(951_868_800), "2000-03-01T00:00:00Z");
        assert_eq!(utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn hex_and_mac() {
        let mut b = String::new();
        hex(&mut b, &[0, 0x0a, 0xff, 0x10]);
        assert_eq!(b, "000aff10");
        b.clear();
        mac(&mut b, &[2, 0, 0xab, 0, 0, 1]);
        assert_eq!(b, "02:00:ab:00:00:01");
        let long: Vec<u8> = (0..=255).collect();
        b.clear();
        hex(&mut b, &long);
        assert_eq!(
            b,
            long.iter().map(|x| format!("{x:02x}")).collect::<String>()
        );
        b.clear();
        mac(&mut b, &long[..130]);
        assert_eq!(
            b,
            long[..130]
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        );
    }

    #[test]
    fn fast_writers_match_display() {
        let mut b = String::new();
        for v in [0u32, 1, 9, 10, 99, 100, 65535, 1_800_000_000, u32::MAX] {
            b.clear();
            push_u32(&mut b, v);
            assert_eq!(b, v.to_string());
        }
        for a in ["0.0.0.0", "192.0.2.255", "10.0.10.1", "255.255.255.255"] {
            let a: std::net::Ipv4Addr = a.parse().unwrap();
            b.clear();
            push_v4(&mut b, a);
            assert_eq!(b, a.to_string());
        }
        let mut x = 0x0123_4567_89ab_cdefu64;
        let check = |a: Ipv6Addr| {
            let mut b = String::new();
            push_v6(&mut b, a);
            assert_eq!(b, a.to_string());
        };
        for a in [
            "::",
            "::1",
            "1::",
            "2001:db8::",
            "2001:db8:1::10",
            "2001:db8:0:1:1:1:1:1",
            "2001:0:0:1:0:0:0:1",
            "1:0:0:2:0:0:3:4",
            "::ffff:192.0.2.1",
            "::192.0.2.1",
            "fe80::1:2",
            "1:2:3:4:5:6:7:8",
            "0:1:0:1:0:1:0:1",
        ] {
            check(a.parse().unwrap());
        }
        // Pseudo-random addresses with zero groups sprinkled in.
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut s = [0u16; 8];
            for (i, g) in s.iter_mut().enumerate() {
                *g = if (x >> (i * 3)) & 3 == 0 {
                    0
                } else {
                    (x >> (i * 5)) as u16 & 0x0fff
                };
            }
            check(Ipv6Addr::from(s));
        }
    }

    #[test]
    fn csv_quoting() {
        let mut b = String::new();
        csv_field(&mut b, "a,b\"c");
        assert_eq!(b, "\"a,b\"\"c\"");
        b.clear();
        csv_field(&mut b, "plain");
        assert_eq!(b, "plain");
    }

    use leasequery::feed::import::{parse_line, FeedBinding};
    use leasequery::proto::record::PortParams;
    use leasequery::requestor::lease::V4Lease;

    fn shared() -> Lease {
        Lease::V4(V4Lease {
            addr: "192.0.2.9".parse().unwrap(),
            port_params: Some(PortParams {
                offset: 6,
                psid_len: 4,
                psid: 5,
            }),
            htype: 1,
            chaddr: vec![2, 0, 0, 0, 0, 9],
            client_id: Some(vec![0xff, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9]),
            state: 2,
            cltt: 1_800_000_000,
            expires: 1_800_003_600,
            relay_id: Some(vec![0, 3, 0, 1]),
            remote_id: Some(b"x".to_vec()),
            softwire: Some("2001:db8::9".parse().unwrap()),
            dhcp4o6: true,
            link: Some("2001:db8::".parse().unwrap()),
        })
    }

    fn v6() -> Lease {
        Lease::V6(V6Lease {
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 9],
            link: None,
            iana: vec![V6Lease6 {
                addr: "2001:db8:2::9".parse().unwrap(),
                len: 128,
                preferred: 100,
                valid: 200,
            }],
            iapd: vec![V6Lease6 {
                addr: "2001:db8:900::".parse().unwrap(),
                len: 56,
                preferred: INFINITE,
                valid: INFINITE,
            }],
            cltt: 1_800_000_000,
            relay_id: None,
            remote_id: Some(vec![0, 0, 0x0d, 0xe9, b'x']),
            bound: true,
        })
    }

    fn render(f: Format, leases: &[Lease], op: Option<Op>) -> String {
        let o = Options {
            br_address: Some("2001:db8::ff".parse().unwrap()),
            ops: op.is_some(),
        };
        let mut fm = formatter(f, &o).unwrap();
        let mut out = Vec::new();
        fm.header(&mut out).unwrap();
        for l in leases {
            fm.binding(&mut out, l, op).unwrap();
        }
        fm.footer(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn jsonl_is_the_import_format() {
        let text = render(Format::Jsonl, &[shared(), v6()], None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let Ok(Some(FeedBinding::V4(b))) = parse_line(lines[0]) else {
            panic!("{}", lines[0])
        };
        assert_eq!(
            (b.addr, b.port_params),
            (
                "192.0.2.9".parse().unwrap(),
                Some(PortParams {
                    offset: 6,
                    psid_len: 4,
                    psid: 5
                })
            )
        );
        assert_eq!(
            (b.cltt, b.expires, b.state),
            (1_800_000_000, 1_800_003_600, 2)
        );
        assert_eq!(b.softwire_src, Some("2001:db8::9".parse().unwrap()));
        assert_eq!(b.v6.map(|c| c.link), Some("2001:db8::".parse().unwrap()));
        assert_eq!(
            (b.relay_id.as_deref(), b.remote_id.as_deref()),
            (Some(&[0, 3, 0, 1][..]), Some(&b"x"[..]))
        );
        let Ok(Some(FeedBinding::V6(b))) = parse_line(lines[1]) else {
            panic!("{}", lines[1])
        };
        assert_eq!(b.link, std::net::Ipv6Addr::UNSPECIFIED);
        assert_eq!(b.iana[0].valid_until, 1_800_000_200);
        assert_eq!(b.iapd[0].valid_until, INFINITE);
        // With an op: the field is added.
        let text = render(Format::Jsonl, &[shared()], Some(Op::Remove));
        assert!(text.trim_end().ends_with(",\"op\":\"remove\"}"), "{text}");
    }

    #[test]
    fn csv_has_a_column_per_header_field() {
        let text = render(Format::Csv, &[shared(), v6()], Some(Op::Upsert));
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3);
        let n = lines[0].split(',').count();
        assert_eq!(n, 18);
        for l in &lines[1..] {
            assert_eq!(l.split(',').count(), n, "{l}");
            assert!(l.ends_with(",upsert"));
        }
        assert!(lines[1].starts_with("4o6,192.0.2.9,6,4,5,02:00:00:00:00:09,"));
    }

    #[test]
    fn snabb_takes_bound_softwires_only() {
        let mut unbound = shared();
        if let Lease::V4(l) = &mut unbound {
            l.state = 4;
            l.addr = "192.0.2.10".parse().unwrap();
        }
        let text = render(Format::Snabb, &[shared(), v6(), unbound.clone()], None);
        assert_eq!(text.matches("softwire {").count(), 1);
        assert!(text.contains("ipv4 192.0.2.9;\n      psid 5;\n      b4-ipv6 2001:db8::9;\n      br-address 2001:db8::ff;"));
        assert!(text.contains("psid-length 4;\n        reserved-ports-bit-count 6;"));
        let json = render(Format::SnabbJson, &[shared(), v6(), unbound], None);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let list = &v["snabb-softwire-v3:softwire-config"]["binding-table"]["softwire"];
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["port-set"]["reserved-ports-bit-count"], 6);
        // Empty table: still one valid JSON document.
        let empty = render(Format::SnabbJson, &[], None);
        assert!(serde_json::from_str::<serde_json::Value>(&empty).is_ok());
        // No --br-address: refused.
        assert!(formatter(Format::Snabb, &Options::default()).is_err());
        assert!(formatter(Format::SnabbJson, &Options::default()).is_err());
        // write_document: the same as header + bindings + footer.
        let mut out = Vec::new();
        let o = Options {
            br_address: Some("2001:db8::ff".parse().unwrap()),
            ops: false,
        };
        assert_eq!(
            write_document(Format::Snabb, &o, &mut out, &[shared()]).unwrap(),
            1
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            render(Format::Snabb, &[shared()], None)
        );
    }

    #[test]
    fn table_lines() {
        let text = render(Format::Table, &[shared(), v6()], None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("FAM"));
        assert!(
            lines[1].contains("192.0.2.9")
                && lines[1].contains("5/4")
                && lines[1].contains("2027-01-15T08:00:00Z")
        );
        assert!(lines[2].contains("2001:db8:2::9 (+1)") && lines[2].contains("never"));
    }
}
