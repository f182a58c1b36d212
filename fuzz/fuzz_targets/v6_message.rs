//! Fuzz the DHCPv6 decoders (`cargo +nightly fuzz run v6_message`): views, accessors and the
//! owned form must never panic, and whatever decodes must survive encode/decode unchanged.
#![no_main]

use leasequery::proto::framing::{decode_frame, Frame};
use leasequery::proto::v6::{AnyView, Message, RelayMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Frame::Complete { msg, .. }) = decode_frame(data) {
        let _ = AnyView::parse(msg);
    }
    if let Ok(any) = AnyView::parse(data) {
        let _ = any.innermost();
        for o in any.options().iter() {
            let _ = (o.typed(), o.u32_value(), o.nested(), o.lq_query());
            if let Ok(codes) = o.oro() {
                codes.for_each(drop);
            }
        }
    }
    if let Ok(m) = Message::decode(data) {
        let mut out = Vec::new();
        m.encode(&mut out).expect("a decoded message encodes");
        assert_eq!(Message::decode(&out).as_ref(), Ok(&m));
    }
    if let Ok(r) = RelayMessage::decode(data) {
        let mut out = Vec::new();
        r.encode(&mut out).expect("a decoded relay message encodes");
        assert_eq!(RelayMessage::decode(&out).as_ref(), Ok(&r));
    }
});
