//! INFORMATIONAL (RFC 7296 §1.4): DELETE of CHILD_SAs and of the IKE SA, and liveness checks.

use std::time::Instant;

use super::{child::ChildState, rules, IkeSa, Task};
use crate::crypto::Random;
use crate::error::Result;
use crate::event::Event;
use crate::wire::{Delete, ExchangeType, Notify, NotifyType, Payload, ProtocolId};

impl IkeSa {
    pub(super) fn handle_informational_request(
        &mut self,
        now: Instant,
        id: u32,
        payloads: Vec<Payload>,
        rng: &mut dyn Random,
    ) {
        if rules::check(&payloads, &rules::INFORMATIONAL).is_err() {
            let n = Notify::new(NotifyType::InvalidSyntax);
            self.send_response(ExchangeType::Informational, id, vec![n.into()], rng);
            return;
        }
        // The initiator refused our IKE_AUTH response after we had established the SA
        // (RFC 7296 §2.21.2): nothing protected by this SA can be trusted by the peer.
        if payloads
            .iter()
            .filter_map(Payload::as_notify)
            .any(|n| n.notify_type == NotifyType::AuthenticationFailed)
        {
            self.send_response(ExchangeType::Informational, id, Vec::new(), rng);
            self.fail("AUTHENTICATION_FAILED from peer: it refused our authentication".into());
            return;
        }
        let mut delete_ike = false;
        let mut deleted_in = Vec::new();
        for p in &payloads {
            let Payload::Delete(d) = p else { continue };
            match d.protocol {
                ProtocolId::Ike => delete_ike = true,
                ProtocolId::Esp => {
                    // The peer names its inbound SPIs, our outbound ones (§1.4.1); we answer
                    // with our inbound SPIs of the same pairs.
                    for spi in d.spis_u32().unwrap_or_default() {
                        if let Some(i) = self.children.iter().position(|c| c.spi_out == spi) {
                            let c = self.children.remove(i);
                            // Both deleting it at once: answer without it (§2.25.1).
                            if c.state != ChildState::Deleting {
                                deleted_in.push(c.spi_in);
                            }
                            self.events.push_back(Event::ChildSaDown {
                                reqid: c.reqid,
                                spi_in: c.spi_in,
                                spi_out: c.spi_out,
                                reason: "deleted by peer".into(),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        if delete_ike {
            self.send_response(ExchangeType::Informational, id, Vec::new(), rng);
            self.on_peer_deletes_rekeyed_sa(now);
            self.close("deleted by peer".into());
            return;
        }
        let response = if deleted_in.is_empty() {
            Vec::new()
        } else {
            vec![Delete::esp(&deleted_in).into()]
        };
        self.send_response(ExchangeType::Informational, id, response, rng);
    }

    pub(super) fn start_delete_child(
        &mut self,
        now: Instant,
        spi_in: u32,
        rng: &mut dyn Random,
    ) -> Result<()> {
        if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
            c.state = ChildState::Deleting;
        }
        self.send_request(
            now,
            ExchangeType::Informational,
            vec![Delete::esp(&[spi_in]).into()],
            Task::DeleteChild { spi_in },
            rng,
        )
    }

    pub(super) fn handle_delete_child_response(&mut self, spi_in: u32, _payloads: &[Payload]) {
        // If the peer deleted the pair itself meanwhile (a collision, §2.8.1 / §1.4.1), it is
        // already gone and reported.
        if let Some(i) = self.children.iter().position(|c| c.spi_in == spi_in) {
            let c = self.children.remove(i);
            self.events.push_back(Event::ChildSaDown {
                reqid: c.reqid,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                reason: "deleted".into(),
            });
        }
    }
}
