//! `loadgen ceiling`: the physical limit for bulk streaming on this host: one thread writes
//! pre-filled buffers of the server's write size over loopback TCP, another reads them. Quote
//! the server's bytes/s as a fraction of this, measured on the same machine at the same time.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Streams `bytes` octets in `write_size` writes over `[::1]` (or 127.0.0.1); returns how long
/// the reader took, from just after its connect to the last octet.
pub fn stream(bytes: u64, write_size: usize) -> std::io::Result<Duration> {
    let l = TcpListener::bind("[::1]:0").or_else(|_| TcpListener::bind("127.0.0.1:0"))?;
    let addr = l.local_addr()?;
    let write_size = write_size.max(1);
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = l.accept()?;
        let buf = vec![0x5au8; write_size];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(write_size as u64) as usize;
            s.write_all(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    let mut buf = vec![0u8; 4 << 20];
    let t0 = Instant::now();
    let mut got = 0u64;
    while got < bytes {
        let n = c.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("ceiling sender closed early"));
        }
        got += n as u64;
    }
    let d = t0.elapsed();
    sender
        .join()
        .map_err(|_| std::io::Error::other("ceiling sender panicked"))??;
    Ok(d)
}
