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
        let mut out = Vec::new();
        m.encode(&mut out).expect("a decoded message encodes");
        assert_eq!(Message::decode(&out).as_ref(), Ok(&m));
    }
});
