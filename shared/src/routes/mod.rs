//! Route logic: the decisions, generic over the [`Store`](crate::store::Store) and
//! [`Push`](crate::push::Push) ports. The Lambda handlers ([`crate::lambda`]) and the local
//! gateway both call these.

pub mod catch_up;
pub mod connect;
pub mod deliver;
pub mod disconnect;
pub mod fanout;
pub mod notify;
pub mod presence;
pub mod reach;
pub mod reply;
pub mod report;
pub mod revoke;
pub mod rooms;
pub mod subscribe;
pub mod subscriptions;
