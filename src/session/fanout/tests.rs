//! Unit tests of the fan-out (no shell, no mesh): test members count their encodings and
//! record what reaches them.

use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;
use std::rc::Rc;

use super::{fan_out, Member};
use crate::lease::{BindingKey, Change, ChangeKind, V4Binding};
use crate::proto::codes::dhcp_state;

fn change(addr: u8, at: u32) -> Change {
    Change::V4 {
        at,
        kind: ChangeKind::Renew,
        binding: V4Binding {
            addr: Ipv4Addr::new(192, 0, 2, addr),
            port_params: None,
            htype: 1,
            chaddr: vec![2, 0, 0, 0, 0, addr],
            client_id: None,
            state: dhcp_state::ACTIVE,
            cltt: at,
            state_start: at,
            expires: at + 3600,
            circuit_id: None,
            remote_id: None,
            relay_id: None,
            softwire_src: None,
            v6: None,
            data_source: 0,
        },
    }
}

fn addr_of(c: &Change) -> u8 {
    match c {
        Change::V4 { binding, .. } => binding.addr.octets()[3],
        Change::V6 { .. } => unreachable!("the tests use v4 changes"),
    }
}

/// A test message: (wire form, last address octet, now).
type Msg = (u8, u8, u32);
/// What reached a member: the binding key, the change's address octet, the shared message.
type Got = (Rc<BindingKey>, u8, Rc<Msg>);

/// A member of wire form `wire` that wants the addresses in `wants`, encodes a change as
/// `(wire, addr, now)` (or not at all for the addresses in `too_long`), and stops wanting
/// anything after `stop_after` deliveries.
struct M {
    wire: u8,
    wants: Vec<u8>,
    too_long: Vec<u8>,
    stop_after: Option<usize>,
    encodes: Rc<Cell<usize>>,
    got: RefCell<Vec<Got>>,
}

impl M {
    fn new(wire: u8, wants: &[u8], encodes: &Rc<Cell<usize>>) -> M {
        M {
            wire,
            wants: wants.to_vec(),
            too_long: Vec::new(),
            stop_after: None,
            encodes: encodes.clone(),
            got: RefCell::new(Vec::new()),
        }
    }
    fn addrs(&self) -> Vec<u8> {
        self.got.borrow().iter().map(|g| g.1).collect()
    }
}

impl Member for M {
    type Wire = u8;
    type Msg = Msg;
    fn wire(&self) -> &u8 {
        &self.wire
    }
    fn wants(&self, c: &Change) -> bool {
        self.stop_after.is_none_or(|n| self.got.borrow().len() < n)
            && self.wants.contains(&addr_of(c))
    }
    fn encode(&self, c: &Change, now: u32) -> Option<Msg> {
        self.encodes.set(self.encodes.get() + 1);
        let a = addr_of(c);
        (!self.too_long.contains(&a)).then_some((self.wire, a, now))
    }
}

fn run(members: &[M], changes: &[Change]) -> u64 {
    fan_out(members, changes, 77, |m, key, c, msg| {
        m.got
            .borrow_mut()
            .push((key.clone(), addr_of(c), msg.clone()));
    })
}

#[test]
fn each_change_is_encoded_once_per_wire_form_and_shared() {
    let n = Rc::new(Cell::new(0));
    let members = [
        M::new(1, &[1, 2], &n),
        M::new(1, &[1, 2], &n),
        M::new(2, &[1, 2], &n),
    ];
    assert_eq!(run(&members, &[change(1, 10), change(2, 11)]), 0);
    // Two changes, two wire forms: four encodings for six deliveries.
    assert_eq!(n.get(), 4);
    for m in &members {
        assert_eq!(m.addrs(), [1, 2]);
    }
    for i in 0..2 {
        let a = &members[0].got.borrow()[i].2;
        let b = &members[1].got.borrow()[i].2;
        let c = &members[2].got.borrow()[i].2;
        assert!(Rc::ptr_eq(a, b), "same wire form: one shared encoding");
        assert!(!Rc::ptr_eq(a, c));
        assert_eq!((a.0, c.0), (1, 2));
        assert_eq!(a.2, 77, "encoded at the time passed in");
    }
}

#[test]
fn the_binding_key_is_built_once_per_change_for_every_wire_form() {
    let n = Rc::new(Cell::new(0));
    let members = [M::new(1, &[5], &n), M::new(2, &[5], &n)];
    let c = change(5, 10);
    run(&members, std::slice::from_ref(&c));
    let a = members[0].got.borrow()[0].0.clone();
    let b = members[1].got.borrow()[0].0.clone();
    assert!(Rc::ptr_eq(&a, &b));
    assert_eq!(*a, BindingKey::of(&c));
}

#[test]
fn a_change_nobody_of_a_wire_form_wants_is_not_encoded_for_it() {
    let n = Rc::new(Cell::new(0));
    let members = [M::new(1, &[1], &n), M::new(1, &[2], &n), M::new(2, &[], &n)];
    run(&members, &[change(1, 10), change(2, 11), change(3, 12)]);
    assert_eq!(n.get(), 2);
    assert_eq!(members[0].addrs(), [1]);
    assert_eq!(members[1].addrs(), [2]);
    assert!(members[2].addrs().is_empty());
}

#[test]
fn changes_reach_each_member_in_their_order() {
    let n = Rc::new(Cell::new(0));
    let members = [M::new(1, &[3, 1, 2], &n), M::new(2, &[2, 3], &n)];
    run(
        &members,
        &[change(3, 1), change(1, 2), change(2, 3), change(3, 4)],
    );
    assert_eq!(members[0].addrs(), [3, 1, 2, 3]);
    assert_eq!(members[1].addrs(), [3, 2, 3]);
}

#[test]
fn a_change_too_long_for_one_message_is_counted_per_member_that_wanted_it() {
    let n = Rc::new(Cell::new(0));
    let mut a = M::new(1, &[1, 2], &n);
    a.too_long = vec![1];
    let members = [a, M::new(1, &[1, 2], &n), M::new(1, &[2], &n)];
    // Change 1: wanted by two members of one wire form, encoded once, too long: 2 missed.
    assert_eq!(run(&members, &[change(1, 10), change(2, 11)]), 2);
    assert_eq!(n.get(), 2);
    assert_eq!(members[0].addrs(), [2]);
    assert_eq!(members[1].addrs(), [2]);
    assert_eq!(members[2].addrs(), [2]);
}

#[test]
fn a_member_that_stops_wanting_during_a_batch_gets_nothing_after() {
    let n = Rc::new(Cell::new(0));
    let mut a = M::new(1, &[1, 2, 3], &n);
    a.stop_after = Some(1);
    let members = [a, M::new(1, &[1, 2, 3], &n)];
    run(&members, &[change(1, 1), change(2, 2), change(3, 3)]);
    assert_eq!(members[0].addrs(), [1]);
    assert_eq!(members[1].addrs(), [1, 2, 3]);
}

#[test]
fn no_members_no_work() {
    let members: [M; 0] = [];
    assert_eq!(run(&members, &[change(1, 1)]), 0);
}
