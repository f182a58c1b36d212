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

fn hex(buf: &mut String, b: &[u8]) {
    for x in b {
        let _ = write!(buf, "{x:02x}");
    }
}

fn mac(buf: &mut String, b: &[u8]) {
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            buf.push(':');
        }
        let _ = write!(buf, "{x:02x}");
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
    let _ = write!(b, "{{\"ipv4\":\"{}\"", l.addr);
    if let Some(p) = l.port_params.filter(|p| p.psid_len > 0) {
        let _ = write!(
            b,
            ",\"psid\":{{\"offset\":{},\"len\":{},\"id\":{}}}",
            p.offset, p.psid_len, p.psid
        );
    }
    b.push_str(",\"chaddr\":\"");
    mac(b, &l.chaddr);
    b.push('"');
    if let Some(c) = &l.client_id {
        b.push_str(",\"client_id\":\"");
        hex(b, c);
        b.push('"');
    }
    let _ = write!(
        b,
        ",\"state\":\"{}\",\"cltt\":{},\"expires\":{}",
        state(l),
        l.cltt,
        l.expires
    );
    for (k, v) in [("relay_id", &l.relay_id), ("remote_id", &l.remote_id)] {
        if let Some(v) = v {
            let _ = write!(b, ",\"{k}\":\"");
            hex(b, v);
            b.push('"');
        }
    }
    // A DHCP4o6 binding keeps its DHCP4o6 form: its link when the query named one, else `::`
    // when it has no softwire source either.
    if l.dhcp4o6 && (l.link.is_some() || l.softwire.is_none()) {
        let _ = write!(b, ",\"link\":\"{}\"", link_or_unspecified(l.link));
    } else if let Some(link) = l.link {
        let _ = write!(b, ",\"link\":\"{link}\"");
    }
    if let Some(s) = l.softwire {
        let _ = write!(b, ",\"softwire_src\":\"{s}\"");
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
    fn csv_quoting() {
        let mut b = String::new();
        csv_field(&mut b, "a,b\"c");
        assert_eq!(b, "\"a,b\"\"c\"");
        b.clear();
        csv_field(&mut b, "plain");
        assert_eq!(b, "plain");
    }
}
