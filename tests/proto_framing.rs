//! TCP framing (RFC 5460 §5.1, RFC 6926 §6.1): need-more at every split, pipelined frames,
//! empty and maximal frames.

use leasequery::proto::framing::{decode_frame, encode_frame, length_prefix, Frame, MAX_MESSAGE};
use leasequery::proto::{DecodeError, EncodeError};
use proptest::prelude::*;

#[test]
fn need_more_for_short_buffers() {
    assert_eq!(decode_frame(&[]), Ok(Frame::NeedMore));
    assert_eq!(decode_frame(&[0x00]), Ok(Frame::NeedMore));
    // Prefix says 5, only k < 5 message octets present.
    let full = [0x00, 0x05, 1, 2, 3, 4, 5];
    for k in 2..full.len() {
        assert_eq!(decode_frame(&full[..k]), Ok(Frame::NeedMore), "k = {k}");
    }
    assert_eq!(
        decode_frame(&full),
        Ok(Frame::Complete {
            msg: &[1, 2, 3, 4, 5],
            consumed: 7
        })
    );
}

#[test]
fn mid_prefix_split_reassembles() {
    // A stream of one frame arriving as [0x01] then the rest: the caller appends and retries.
    let mut msg = vec![0u8; 0x0104];
    msg[0] = 14;
    let mut stream = Vec::new();
    encode_frame(&msg, &mut stream).unwrap();
    assert_eq!(&stream[..2], &[0x01, 0x04]);
    let mut rx = Vec::new();
    rx.extend_from_slice(&stream[..1]);
    assert_eq!(decode_frame(&rx), Ok(Frame::NeedMore));
    rx.extend_from_slice(&stream[1..]);
    assert_eq!(
        decode_frame(&rx),
        Ok(Frame::Complete {
            msg: &msg,
            consumed: 0x0106
        })
    );
}

#[test]
fn two_frames_back_to_back_one_at_a_time() {
    let buf = [
        0x00, 0x04, 0x0e, 0xab, 0xcd, 0xef, 0x00, 0x02, 0x10, 0x20, 0x00,
    ];
    let Ok(Frame::Complete { msg, consumed }) = decode_frame(&buf) else {
        panic!("first")
    };
    assert_eq!((msg, consumed), (&[0x0e, 0xab, 0xcd, 0xef][..], 6));
    let rest = &buf[consumed..];
    let Ok(Frame::Complete { msg, consumed }) = decode_frame(rest) else {
        panic!("second")
    };
    assert_eq!((msg, consumed), (&[0x10, 0x20][..], 4));
    // One trailing octet: the start of a third prefix.
    assert_eq!(decode_frame(&rest[consumed..]), Ok(Frame::NeedMore));
}

#[test]
fn zero_length_is_an_error() {
    assert_eq!(decode_frame(&[0, 0]), Err(DecodeError::EmptyFrame));
    assert_eq!(decode_frame(&[0, 0, 1, 2]), Err(DecodeError::EmptyFrame));
}

#[test]
fn maximum_size_frame() {
    let msg = vec![0x5a; MAX_MESSAGE];
    let mut out = vec![0xee]; // existing content is kept
    encode_frame(&msg, &mut out).unwrap();
    assert_eq!(out.len(), 1 + 2 + MAX_MESSAGE);
    assert_eq!(&out[..3], &[0xee, 0xff, 0xff]);
    assert_eq!(
        decode_frame(&out[1..]),
        Ok(Frame::Complete {
            msg: &msg,
            consumed: MAX_MESSAGE + 2
        })
    );
    assert_eq!(decode_frame(&out[1..out.len() - 1]), Ok(Frame::NeedMore));
}

#[test]
fn too_long_writes_nothing() {
    let msg = vec![0u8; MAX_MESSAGE + 1];
    let mut out = vec![1, 2, 3];
    let err = EncodeError::TooLong {
        len: MAX_MESSAGE + 1,
        max: MAX_MESSAGE,
    };
    assert_eq!(encode_frame(&msg, &mut out), Err(err));
    assert_eq!(out, [1, 2, 3]);
    assert_eq!(length_prefix(MAX_MESSAGE + 1), Err(err));
    assert_eq!(length_prefix(325), Ok([0x01, 0x45]));
    assert_eq!(length_prefix(0), Ok([0, 0]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of frames split anywhere decodes back to the same messages, in order.
    #[test]
    fn pipelined_frames_roundtrip(
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 1..6),
        split in any::<prop::sample::Index>(),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            encode_frame(m, &mut stream).unwrap();
        }
        let cut = split.index(stream.len() + 1);
        let mut rx: Vec<u8> = stream[..cut].to_vec();
        let mut got = Vec::new();
        let mut pending = &stream[cut..];
        loop {
            match decode_frame(&rx).unwrap() {
                Frame::Complete { msg, consumed } => {
                    got.push(msg.to_vec());
                    rx.drain(..consumed);
                }
                Frame::NeedMore if pending.is_empty() => break,
                Frame::NeedMore => {
                    rx.extend_from_slice(pending);
                    pending = &[];
                }
            }
        }
        prop_assert!(rx.is_empty());
        prop_assert_eq!(got, msgs);
    }

    /// Random bytes never panic.
    #[test]
    fn random_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..300)) {
        match decode_frame(&buf) {
            Ok(Frame::Complete { msg, consumed }) => {
                prop_assert_eq!(consumed, msg.len() + 2);
                prop_assert!(consumed <= buf.len());
            }
            Ok(Frame::NeedMore) | Err(DecodeError::EmptyFrame) => {}
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }
}
