//! The WebSocket gateway: one reader task and one writer task per
//! connection ([`ws`]), the handling of each request ([`handlers`]), and
//! caps on connections ([`limits`]). It talks to the hub and the bus; it
//! knows nothing of SQL.

pub mod handlers;
pub mod limits;
pub mod ws;
