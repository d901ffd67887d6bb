//! The ground floor: plain data every floor above shares — user ids,
//! identities, and the records the store keeps. No I/O, no rules.

pub mod identity;
pub mod ids;
pub mod records;

pub use identity::{Identity, IdentityKind};
pub use records::{
    Account, HistoryQuery, NewMessage, Page, ProfileUpdate, Role, RoomRecord, SearchQuery, SearchScope, UploadRecord,
};
