//! Record types shared by every CitySOC component.
//!
//! Records follow Zeek's log formats and field names so that Zeek tooling and
//! SigmaHQ's Zeek rules work on them unchanged. Serialising a record with
//! `serde_json` yields exactly one line of a Zeek JSON log
//! (`LogAscii::use_json=T`): dotted field names, times as epoch seconds with
//! microseconds, unset fields omitted.

mod alert;
mod catalog;
mod ics;
mod ids;
mod records;
mod samples;
pub mod summary;
mod time;

pub use alert::{AlertRecord, RuleSource, Severity};
pub use catalog::{FieldDef, FieldType, LogDef, CATALOG, OVERFLOW};
pub use ics::{
    BacnetRecord, CoapRecord, Dnp3ObjectRecord, Dnp3Record, KnownDeviceRecord, ModbusDetailRecord, ModbusRecord,
    MqttConnectRecord, MqttPublishRecord, MqttSubscribeRecord, SnmpRecord,
};
pub use ids::{FlowUid, SensorId};
pub use records::{
    ConnRecord, DhcpRecord, DnsRecord, Event, FilesRecord, FtpRecord, HttpRecord, NtpRecord, QuicRecord, SmtpRecord,
    SshRecord, SslRecord, StatsRecord, TunnelRecord, WeirdRecord,
};
pub use samples::sample_events;
pub use summary::{Summary, SummaryArgs};
pub use time::{Interval, Time};
