//! Fuzz the journal record decoder (`cargo +nightly fuzz run journal_record`): any bytes must
//! give a record or a typed error, never a panic; a decoded change must re-encode to a record
//! that decodes to the same change.
#![no_main]

use leasequery::store::record::{
    decode_payload, decode_record, encode_change, FileHeader, Payload,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = FileHeader::decode(data);
    let _ = decode_record(data);
    if let Ok(Payload::Change(c)) = decode_payload(data) {
        let mut buf = Vec::new();
        encode_change(7, &c, &mut buf).expect("a decoded change encodes");
        let (seq, again, used) = decode_record(&buf).expect("re-encoded change decodes");
        assert_eq!((seq, used), (7, buf.len()));
        assert_eq!(again, Payload::Change(c));
    }
});
