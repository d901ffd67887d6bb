//! The ground floor: plain data every floor above shares — user ids,
//! identities, and the records the store keeps. No I/O, no rules.

pub mod identity;
pub mod ids;
pub mod records;

pub use identity::{Identity, IdentityKind};
pub use records::{
    Account, Ban, HistoryQuery, NewMessage, Page, ProfileUpdate, Role, RoomModes, RoomRecord, SearchQuery, SearchScope,
    UploadRecord,
};
