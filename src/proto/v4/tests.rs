use super::*;

#[test]
fn scan_reports_where_the_input_ran_out() {
    assert_eq!(scan_options(&[0, 0, 255, 9]), Ok(&[0u8, 0][..]));
    assert_eq!(scan_options(&[53, 1, 1, 255]), Ok(&[53u8, 1, 1][..]));
    assert_eq!(scan_options(&[0, 0]), Err(DecodeError::MissingEnd));
    assert_eq!(
        scan_options(&[53]),
        Err(DecodeError::Truncated {
            at: MIN_LEN + 1,
            needed: 1
        })
    );
    assert_eq!(
        scan_options(&[53, 4, 1]),
        Err(DecodeError::Truncated {
            at: MIN_LEN + 3,
            needed: 3
        })
    );
}

#[test]
fn options_skip_pad_and_stop_at_the_area_end() {
    let area = [0, 53, 1, 13, 0, 0, 61, 0, 0];
    let got: Vec<(u8, &[u8])> = Options { rest: &area }.collect();
    assert_eq!(got, [(53, &[13u8][..]), (61, &[][..])]);
}

#[test]
fn put_option_splits_at_255() {
    let mut out = Vec::new();
    put_option(&mut out, 200, &[]);
    assert_eq!(out, [200, 0]);
    for (len, instances) in [(255, vec![255]), (256, vec![255, 1]), (510, vec![255, 255])] {
        let mut out = Vec::new();
        put_option(&mut out, 200, &vec![7; len]);
        let view = Options { rest: &out };
        assert_eq!(
            view.map(|(_, v)| v.len()).collect::<Vec<_>>(),
            instances,
            "len {len}"
        );
    }
}

#[test]
fn sub_options_report_a_short_tail() {
    let bad = Err(DecodeError::BadOptionValue { code: 82 });
    assert_eq!(RelayAgentInfo::find(&[1, 1, 9, 2, 0], 2), Ok(Some(&[][..])));
    assert_eq!(RelayAgentInfo::find(&[1, 1, 9, 2], 2), bad);
    assert_eq!(RelayAgentInfo::find(&[1, 2, 9], 1), bad);
    assert_eq!(RelayAgentInfo::find(&[], 1), Ok(None));
}
