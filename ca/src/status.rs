//! Status of orders and authorizations, derived from what is stored and the clock. One pure
//! function each, so every reader sees the same answer.

use crate::model::{AuthzStatus, OrderStatus};

/// RFC 8555 §7.1.6: an authorization that is pending or valid past its expiry is expired.
pub fn authorization_status(stored: AuthzStatus, expires: i64, now: i64) -> AuthzStatus {
    match stored {
        AuthzStatus::Pending | AuthzStatus::Valid if now >= expires => AuthzStatus::Expired,
        other => other,
    }
}

/// RFC 8555 §7.1.6: an order is invalid once expired or once any authorization failed, ready
/// when every authorization is valid, and pending before that. `processing`, `valid` and
/// `invalid` are stored once reached.
pub fn order_status(stored: OrderStatus, authorizations: &[AuthzStatus], expires: i64, now: i64) -> OrderStatus {
    match stored {
        OrderStatus::Valid | OrderStatus::Invalid | OrderStatus::Processing => return stored,
        OrderStatus::Pending | OrderStatus::Ready => {}
    }
    if now >= expires {
        return OrderStatus::Invalid;
    }
    if authorizations.iter().any(|s| {
        matches!(s, AuthzStatus::Invalid | AuthzStatus::Deactivated | AuthzStatus::Expired | AuthzStatus::Revoked)
    }) {
        return OrderStatus::Invalid;
    }
    if !authorizations.is_empty() && authorizations.iter().all(|s| *s == AuthzStatus::Valid) {
        OrderStatus::Ready
    } else {
        OrderStatus::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthzStatus as A;
    use OrderStatus as O;

    #[test]
    fn order_status_follows_rfc8555_7_1_6() {
        assert_eq!(order_status(O::Pending, &[A::Valid, A::Pending], 100, 0), O::Pending);
        assert_eq!(order_status(O::Pending, &[A::Valid, A::Valid], 100, 0), O::Ready);
        assert_eq!(order_status(O::Pending, &[A::Valid, A::Invalid], 100, 0), O::Invalid);
        assert_eq!(order_status(O::Pending, &[A::Valid, A::Deactivated], 100, 0), O::Invalid);
        assert_eq!(order_status(O::Pending, &[A::Valid], 100, 100), O::Invalid);
        assert_eq!(order_status(O::Valid, &[A::Valid], 100, 200), O::Valid);
        assert_eq!(authorization_status(A::Valid, 100, 100), A::Expired);
        assert_eq!(authorization_status(A::Invalid, 100, 100), A::Invalid);
    }
}
