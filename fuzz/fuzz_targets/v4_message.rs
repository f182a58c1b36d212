//! Fuzz the DHCPv4 decoders (`cargo +nightly fuzz run v4_message`): the view and the owned form
//! must never panic, and whatever decodes must survive encode/decode unchanged.
#![no_main]

use leasequery::proto::v4::{Message, MessageView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = MessageView::parse(data) {
        let _ = v.message_type();
        for (code, _) in v.options() {
            let _ = v.option(code);
        }
    }
    if let Ok(m) = Message::decode(data) {
        // The encoder normalises (option 82 last, RFC 3046 §2.1; long options joined): one
        // encode/decode reaches the normal form, and the normal form is stable.
        let mut out = Vec::new();
        m.encode(&mut out).expect("a decoded message encodes");
        let m2 = Message::decode(&out).expect("an encoded message decodes");
        let mut out2 = Vec::new();
        m2.encode(&mut out2).expect("encodes again");
        assert_eq!(out, out2);
    }
});
