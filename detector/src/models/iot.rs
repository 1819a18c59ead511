//! IoT devices leaving their baseline. Each host in `device_nets` learns a
//! profile for `learn_secs` of record time from its first record: the
//! peers it talks with, the ports it uses and serves, the industrial
//! functions (Modbus, DNP3, BACnet, CoAP methods) and MQTT topics. After
//! that, anything new is a departure and raises an alert once; it then
//! joins the profile. Admins accept a change as the new normal by adding it
//! to `accepted` in `rules/models.toml`.

use super::config::{parse_accepted, IotConfig, Kind};
use super::{human_secs, Fields, ModelCounters, Verdict};
use schema::summary::some_of;
use schema::{Summary, Time};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

#[derive(Default)]
struct Profile {
    first: i64,
    items: HashMap<Kind, BTreeSet<String>>,
    /// Kinds that grew past `max_items`: not steady, not judged.
    overflow: BTreeSet<Kind>,
}

pub struct IotModel {
    cfg: IotConfig,
    devices: HashMap<IpAddr, Profile>,
    accepted: BTreeSet<(IpAddr, Kind, String)>,
}

impl IotModel {
    pub fn state_len(&self) -> usize {
        self.devices.len()
    }

    pub fn new(cfg: IotConfig) -> Self {
        let accepted = cfg.accepted.iter().filter_map(|a| parse_accepted(a)).collect();
        IotModel { cfg, devices: HashMap::new(), accepted }
    }

    fn is_device(&self, ip: &IpAddr) -> bool {
        self.cfg.devices.contains(ip) && !self.cfg.common.as_ref().is_some_and(|x| x.exclude.contains(ip))
    }

    pub fn observe(&mut self, log: &str, ts: Time, r: &dyn Fields, c: &mut ModelCounters, out: &mut Vec<Verdict>) {
        let (Some(orig), Some(resp)) = (r.ip("id.orig_h"), r.ip("id.resp_h")) else { return };
        let port = r.port("id.resp_p").unwrap_or(0);
        let proto = r.text("proto").unwrap_or_else(|| "tcp".into());
        let uid = r.text("uid").map(|u| format!("{log}:{u}"));
        let mut facts: Vec<(IpAddr, Kind, String, IpAddr)> = Vec::new();
        for (dev, peer, outbound) in [(orig, resp, true), (resp, orig, false)] {
            if !self.is_device(&dev) {
                continue;
            }
            match log {
                "conn" => {
                    facts.push((dev, Kind::Peer, peer.to_string(), peer));
                    let dir = if outbound { "to" } else { "serves" };
                    facts.push((dev, Kind::Port, format!("{dir} {proto}/{port}"), peer));
                }
                "modbus" | "dnp3" | "bacnet" | "coap" => {
                    let f = match log {
                        "modbus" => r.text("func"),
                        "dnp3" => r.text("fc_request"),
                        "bacnet" => r.text("pdu_service"),
                        _ => r.text("method"),
                    };
                    if let Some(f) = f.filter(|f| !f.is_empty()) {
                        let role = if outbound { "sends" } else { "receives" };
                        facts.push((dev, Kind::Function, format!("{log} {role} {f}"), peer));
                    }
                }
                "mqtt_publish" if outbound => {
                    if let Some(t) = r.text("topic") {
                        facts.push((dev, Kind::Topic, format!("publishes {t}"), peer));
                    }
                }
                "mqtt_subscribe" if outbound => {
                    for t in r.texts("topics") {
                        facts.push((dev, Kind::Topic, format!("subscribes {t}"), peer));
                    }
                }
                _ => {}
            }
        }
        for (dev, kind, value, peer) in facts {
            self.fact(ts, dev, kind, value, peer, uid.as_deref(), c, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fact(
        &mut self,
        ts: Time,
        dev: IpAddr,
        kind: Kind,
        value: String,
        peer: IpAddr,
        uid: Option<&str>,
        c: &mut ModelCounters,
        out: &mut Vec<Verdict>,
    ) {
        if !self.devices.contains_key(&dev) && self.devices.len() >= self.cfg.max_devices {
            c.state_full += 1;
            return;
        }
        let learn = self.cfg.learn_secs as i64 * 1_000_000;
        let max = self.cfg.max_items;
        let p = self.devices.entry(dev).or_insert_with(|| Profile { first: ts.0, ..Default::default() });
        p.first = p.first.min(ts.0);
        if p.overflow.contains(&kind) {
            return;
        }
        let set = p.items.entry(kind).or_default();
        if set.contains(&value) {
            return;
        }
        if set.len() >= max {
            p.overflow.insert(kind);
            return;
        }
        let learning = ts.0 < p.first.saturating_add(learn);
        let known: Vec<String> = set.iter().take(4).cloned().collect();
        let n_known = set.len();
        set.insert(value.clone());
        if learning || self.accepted.contains(&(dev, kind, value.clone())) {
            return;
        }
        let learned_for = human_secs(ts.0.saturating_sub(p.first) as f64 / 1e6);
        let (known_list, known_more) = some_of(&known, 4);
        let summary = Summary::en(
            "model.iot.profile",
            &[
                ("dev", Some(dev.to_string())),
                ("kind", Some(kind.as_str().to_string())),
                ("value", Some(value.to_string())),
                ("peer", (kind != Kind::Peer).then(|| peer.to_string())),
                ("learned", Some(learned_for)),
                ("known", Some(n_known.to_string())),
                ("known_list", (!known.is_empty()).then_some(known_list)),
                ("known_more", known_more),
            ],
        );
        out.push(Verdict {
            model: "iot",
            first: ts,
            last: ts,
            orig: Some(dev),
            resp: Some(peer),
            resp_p: None,
            summary,
            matched: vec![format!("kind={}", kind.as_str()), format!("value={value}"), format!("known={n_known}")],
            evidence: uid.map(|u| vec![u.to_string()]).unwrap_or_default(),
            severity: None,
            count: 1,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn(ts: f64, orig: &str, resp: &str, port: u16) -> serde_json::Map<String, serde_json::Value> {
        let v = json!({"ts": ts, "uid": "C1", "id.orig_h": orig, "id.resp_h": resp, "id.resp_p": port, "proto": "tcp"});
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn departures_after_learning_and_accepted_changes_stay_quiet() {
        let (cfg, errs) = crate::models::ModelsConfig::parse(
            "[iot]\nid = \"model:iot\"\ntitle = \"t\"\nlevel = \"medium\"\ndevice_nets = [\"10.34.0.0/16\"]\nlearn_secs = 100\naccepted = [\"10.34.0.40 peer 203.0.113.7\", \"10.34.0.40 port to tcp/8883\"]\n",
            std::path::Path::new("m.toml"),
            &Default::default(),
        );
        assert!(errs.is_empty(), "{errs:?}");
        let mut m = IotModel::new(cfg.iot.unwrap());
        let (mut c, mut out) = (ModelCounters::default(), Vec::new());
        let t0 = 1_700_000_000.0;
        m.observe("conn", Time((t0 * 1e6) as i64), &conn(t0, "10.34.0.40", "10.33.9.2", 502), &mut c, &mut out);
        // After learning: the accepted peer and port are quiet, a new one is not.
        let t = t0 + 200.0;
        m.observe("conn", Time((t * 1e6) as i64), &conn(t, "10.34.0.40", "203.0.113.7", 8883), &mut c, &mut out);
        assert!(out.is_empty(), "{out:?}");
        m.observe("conn", Time((t * 1e6) as i64), &conn(t, "10.34.0.40", "203.0.113.8", 8883), &mut c, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].matched, ["kind=peer", "value=203.0.113.8", "known=2"]);
    }
}
