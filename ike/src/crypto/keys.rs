use core::fmt;

use super::{
    CryptoError, DhGroup, EncrAlgorithm, IntegAlgorithm, PrfAlgorithm, Result, SecretBytes,
    SharedSecret, SkCipher,
};

/// Which end of an IKE SA (the original initiator keeps the role for the SA's lifetime;
/// after an IKE SA rekey the rekey's initiator is the new SA's initiator, RFC 7296 §2.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The party that sent IKE_SA_INIT.
    Initiator,
    /// The other party.
    Responder,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Self {
        match self {
            Self::Initiator => Self::Responder,
            Self::Responder => Self::Initiator,
        }
    }
}

/// The negotiated IKE SA transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    /// Encryption of the SK payload.
    pub encr: EncrAlgorithm,
    /// Integrity of the SK payload; `None` exactly when `encr` is an AEAD.
    pub integ: Option<IntegAlgorithm>,
    /// PRF for SKEYSEED, prf+ and AUTH.
    pub prf: PrfAlgorithm,
    /// Key exchange method.
    pub dh: DhGroup,
}

impl IkeSuite {
    /// What IBM Cloud's mount helper configures for strongSwan (`aes256-sha384-ecp384`):
    /// AES-CBC-256, HMAC-SHA2-384-192, PRF-HMAC-SHA2-384, ECP-384.
    pub const IBM_DEFAULT: Self = Self {
        encr: EncrAlgorithm::AesCbc256,
        integ: Some(IntegAlgorithm::HmacSha2_384_192),
        prf: PrfAlgorithm::HmacSha384,
        dh: DhGroup::Ecp384,
    };

    /// Checks the AEAD/integrity pairing (RFC 5282 §8: no integrity transform with GCM; CBC
    /// needs one).
    pub fn validate(&self) -> Result<()> {
        check_pairing(self.encr, self.integ)
    }

    fn integ_key_len(&self) -> usize {
        self.integ.map_or(0, IntegAlgorithm::key_len)
    }
}

fn check_pairing(encr: EncrAlgorithm, integ: Option<IntegAlgorithm>) -> Result<()> {
    match (encr.is_aead(), integ) {
        (true, Some(_)) => Err(CryptoError::InvalidSuite(
            "AES-GCM takes no integrity transform",
        )),
        (false, None) => Err(CryptoError::InvalidSuite(
            "AES-CBC needs an integrity transform",
        )),
        _ => Ok(()),
    }
}

/// RFC 7296 §3.9: nonces are 16 to 256 octets.
fn check_nonce(nonce: &[u8]) -> Result<()> {
    if (16..=256).contains(&nonce.len()) {
        Ok(())
    } else {
        Err(CryptoError::NonceLength(nonce.len()))
    }
}

/// The IKE SA's keys: SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr (RFC 7296 §2.14).
///
/// Zeroized on drop; `Debug` prints only the suite. For AES-GCM, SK_ei/SK_er include the
/// 4-byte salt at the end and SK_ai/SK_ar are empty.
#[derive(Clone)]
pub struct IkeKeys {
    suite: IkeSuite,
    sk_d: SecretBytes,
    sk_ai: SecretBytes,
    sk_ar: SecretBytes,
    sk_ei: SecretBytes,
    sk_er: SecretBytes,
    sk_pi: SecretBytes,
    sk_pr: SecretBytes,
}

impl IkeKeys {
    /// Keys for a new IKE SA from IKE_SA_INIT (RFC 7296 §2.14):
    /// `SKEYSEED = prf(Ni | Nr, g^ir)`,
    /// `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)`.
    ///
    /// `ni`/`nr` are the nonce payload data; SPIs are the IKE header values (big-endian on
    /// the wire).
    pub fn derive(
        suite: IkeSuite,
        g_ir: &SharedSecret,
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self> {
        suite.validate()?;
        check_nonce(ni)?;
        check_nonce(nr)?;
        // HMAC accepts any key length, so Ni | Nr is used whole (the §2.14 halving rule is for
        // fixed-key-size PRFs only).
        let skeyseed = suite.prf.prf_concat(&[ni, nr].concat(), &[g_ir.as_bytes()]);
        Self::expand(suite, &skeyseed, ni, nr, spi_i, spi_r)
    }

    /// Keys for the IKE SA that replaces this one in a CREATE_CHILD_SA rekey (RFC 7296 §2.18):
    /// `SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)` with the *old* SA's PRF, then prf+
    /// with the *new* suite's PRF over the new SPIs. `spi_i` is the SPI chosen by the party
    /// that initiated the rekey, which is the new SA's initiator.
    pub fn rekey(
        &self,
        new_suite: IkeSuite,
        g_ir: &SharedSecret,
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self> {
        new_suite.validate()?;
        check_nonce(ni)?;
        check_nonce(nr)?;
        let skeyseed = self
            .suite
            .prf
            .prf_concat(self.sk_d.as_bytes(), &[g_ir.as_bytes(), ni, nr]);
        Self::expand(new_suite, &skeyseed, ni, nr, spi_i, spi_r)
    }

    fn expand(
        suite: IkeSuite,
        skeyseed: &SecretBytes,
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self> {
        let prf_len = suite.prf.key_len();
        let integ_len = suite.integ_key_len();
        let encr_len = suite.encr.keymat_len();
        let lengths = [
            prf_len, integ_len, integ_len, encr_len, encr_len, prf_len, prf_len,
        ];
        let total = lengths.iter().sum();
        let stream = suite.prf.prf_plus_concat(
            skeyseed.as_bytes(),
            &[ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()],
            total,
        )?;
        let mut keys = stream
            .split(&lengths)
            .ok_or(CryptoError::InvalidSuite(
                "prf+ output shorter than requested",
            ))?
            .into_iter();
        let mut next = || keys.next().unwrap_or_default();
        Ok(Self {
            suite,
            sk_d: next(),
            sk_ai: next(),
            sk_ar: next(),
            sk_ei: next(),
            sk_er: next(),
            sk_pi: next(),
            sk_pr: next(),
        })
    }

    /// Keys for a CHILD_SA (RFC 7296 §2.17):
    /// `KEYMAT = prf+(SK_d, Ni | Nr)`, or `prf+(SK_d, g^ir (new) | Ni | Nr)` with PFS.
    /// For the first CHILD_SA (IKE_AUTH) the nonces are those of IKE_SA_INIT.
    pub fn child_keys(
        &self,
        encr: EncrAlgorithm,
        integ: Option<IntegAlgorithm>,
        g_ir: Option<&SharedSecret>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildKeys> {
        ChildKeys::derive(
            self.suite.prf,
            self.sk_d.as_bytes(),
            encr,
            integ,
            g_ir,
            ni,
            nr,
        )
    }

    /// The SK payload protection for messages *sent by* `sender`: SK_ei/SK_ai for the
    /// initiator, SK_er/SK_ar for the responder. Each end needs both: `sk_cipher(local)` to
    /// seal, `sk_cipher(local.peer())` to open.
    pub fn sk_cipher(&self, sender: Role) -> Result<SkCipher> {
        let (e, a) = match sender {
            Role::Initiator => (&self.sk_ei, &self.sk_ai),
            Role::Responder => (&self.sk_er, &self.sk_ar),
        };
        SkCipher::new(
            self.suite.encr,
            self.suite.integ,
            e.as_bytes(),
            a.as_bytes(),
        )
    }

    /// The suite these keys were derived for.
    pub fn suite(&self) -> IkeSuite {
        self.suite
    }

    /// SK_d: keys CHILD_SAs and the next IKE SA.
    pub fn sk_d(&self) -> &[u8] {
        self.sk_d.as_bytes()
    }
    /// SK_ai: integrity key for messages from the initiator (empty for AEAD).
    pub fn sk_ai(&self) -> &[u8] {
        self.sk_ai.as_bytes()
    }
    /// SK_ar: integrity key for messages from the responder (empty for AEAD).
    pub fn sk_ar(&self) -> &[u8] {
        self.sk_ar.as_bytes()
    }
    /// SK_ei: encryption key (+ salt for GCM) for messages from the initiator.
    pub fn sk_ei(&self) -> &[u8] {
        self.sk_ei.as_bytes()
    }
    /// SK_er: encryption key (+ salt for GCM) for messages from the responder.
    pub fn sk_er(&self) -> &[u8] {
        self.sk_er.as_bytes()
    }
    /// SK_pi: the initiator's key for its AUTH payload's MACedID.
    pub fn sk_pi(&self) -> &[u8] {
        self.sk_pi.as_bytes()
    }
    /// SK_pr: the responder's key for its AUTH payload's MACedID.
    pub fn sk_pr(&self) -> &[u8] {
        self.sk_pr.as_bytes()
    }
    /// SK_pi for the initiator, SK_pr for the responder.
    pub fn sk_p(&self, signer: Role) -> &[u8] {
        match signer {
            Role::Initiator => self.sk_pi(),
            Role::Responder => self.sk_pr(),
        }
    }

    /// The octets `signer` signs or MACs in its AUTH payload (RFC 7296 §2.15):
    /// `real_message | peer_nonce | prf(SK_p, id_payload_body)`. `real_message` is the
    /// signer's IKE_SA_INIT message as sent, `peer_nonce` the other party's nonce data, and
    /// `id_payload_body` the signer's ID payload after its 4-byte generic header.
    pub fn signed_octets(
        &self,
        signer: Role,
        real_message: &[u8],
        peer_nonce: &[u8],
        id_payload_body: &[u8],
    ) -> Vec<u8> {
        super::signed_octets(
            self.suite.prf,
            real_message,
            peer_nonce,
            self.sk_p(signer),
            id_payload_body,
        )
    }
}

impl fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeKeys")
            .field("suite", &self.suite)
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// One direction's CHILD_SA keys. For AES-GCM `encr` is the key followed by the 4-byte salt
/// (the `rfc4106(gcm(aes))` layout) and `integ` is empty.
#[derive(Clone)]
pub struct DirectionKeys {
    encr: SecretBytes,
    integ: SecretBytes,
}

impl DirectionKeys {
    /// Encryption key (‖ salt for GCM).
    pub fn encr(&self) -> &[u8] {
        self.encr.as_bytes()
    }
    /// Integrity key; empty for AEAD.
    pub fn integ(&self) -> &[u8] {
        self.integ.as_bytes()
    }
}

impl fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DirectionKeys(<redacted {}+{} bytes>)",
            self.encr.len(),
            self.integ.len()
        )
    }
}

/// A CHILD_SA's keys in both directions (one ESP SA each way).
#[derive(Clone)]
pub struct ChildKeys {
    encr: EncrAlgorithm,
    integ: Option<IntegAlgorithm>,
    initiator_to_responder: DirectionKeys,
    responder_to_initiator: DirectionKeys,
}

impl ChildKeys {
    /// KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr), taken in the RFC 7296 §2.17 order:
    /// initiator→responder encryption, then integrity; then responder→initiator encryption,
    /// then integrity.
    pub fn derive(
        prf: PrfAlgorithm,
        sk_d: &[u8],
        encr: EncrAlgorithm,
        integ: Option<IntegAlgorithm>,
        g_ir: Option<&SharedSecret>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<Self> {
        check_pairing(encr, integ)?;
        check_nonce(ni)?;
        check_nonce(nr)?;
        let e = encr.keymat_len();
        let a = integ.map_or(0, IntegAlgorithm::key_len);
        let lengths = [e, a, e, a];
        let total = lengths.iter().sum();
        let g = g_ir.map_or(&[][..], SharedSecret::as_bytes);
        let keymat = prf.prf_plus_concat(sk_d, &[g, ni, nr], total)?;
        let mut parts = keymat
            .split(&lengths)
            .ok_or(CryptoError::InvalidSuite(
                "prf+ output shorter than requested",
            ))?
            .into_iter();
        let mut next = || parts.next().unwrap_or_default();
        let initiator_to_responder = DirectionKeys {
            encr: next(),
            integ: next(),
        };
        let responder_to_initiator = DirectionKeys {
            encr: next(),
            integ: next(),
        };
        Ok(Self {
            encr,
            integ,
            initiator_to_responder,
            responder_to_initiator,
        })
    }

    /// The encryption transform.
    pub fn encr(&self) -> EncrAlgorithm {
        self.encr
    }
    /// The integrity transform (`None` for AEAD).
    pub fn integ(&self) -> Option<IntegAlgorithm> {
        self.integ
    }
    /// Keys of the ESP SA carrying traffic from the IKE initiator to the responder.
    pub fn initiator_to_responder(&self) -> &DirectionKeys {
        &self.initiator_to_responder
    }
    /// Keys of the ESP SA carrying traffic from the responder to the initiator.
    pub fn responder_to_initiator(&self) -> &DirectionKeys {
        &self.responder_to_initiator
    }
    /// Keys for the SA we send on, given our role in the IKE SA that created it.
    pub fn outbound(&self, local: Role) -> &DirectionKeys {
        match local {
            Role::Initiator => &self.initiator_to_responder,
            Role::Responder => &self.responder_to_initiator,
        }
    }
    /// Keys for the SA we receive on.
    pub fn inbound(&self, local: Role) -> &DirectionKeys {
        self.outbound(local.peer())
    }
}

impl fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildKeys")
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .field("keys", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DhSecret;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// Inputs shared by the cross-checks: g^ir is the RFC 5903 §8.2 ECP-384 result.
    fn ni() -> Vec<u8> {
        (0x10u8..0x30).collect()
    }
    fn nr() -> Vec<u8> {
        (0x80u8..0xa0).collect()
    }
    fn gir() -> SharedSecret {
        SharedSecret::from_bytes(&h("11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4d603135569b9e9d09cf5d4a270f59746"))
    }
    const SPI_I: u64 = 0x0102_0304_0506_0708;
    const SPI_R: u64 = 0xa1a2_a3a4_a5a6_a7a8;

    fn ibm_keys() -> IkeKeys {
        IkeKeys::derive(IkeSuite::IBM_DEFAULT, &gir(), &ni(), &nr(), SPI_I, SPI_R).unwrap()
    }

    /// SKEYSEED and SK_* for the IBM default suite, checked against an independent Python
    /// (`hmac`) implementation of RFC 7296 §2.13–§2.14 computed offline.
    #[test]
    fn ibm_default_suite_keys_match_independent_computation() {
        let k = ibm_keys();
        assert_eq!(k.sk_d(), h("668b04fd6951be4598c764564beb84ad35be831a4a91f321328578c6a6200ed175979a14030bdcf839ccc54b43955875"));
        assert_eq!(k.sk_ai(), h("bb29208fe78e22c60cbeaf15d195ba8407350c5409504559091dc10eb2d5b381f7dde6056eeb0b0d0e43f09deec5fad1"));
        assert_eq!(k.sk_ar(), h("5249f68164d4d577af308ccea38734f0bef74a7bd36f20518365c889885a8b6cfdb9041825e0a4be7a6d5855d73bf446"));
        assert_eq!(
            k.sk_ei(),
            h("584b1a6af5f827c326599048a7df3705e6ec2c898de5dbb62bf571402889c96c")
        );
        assert_eq!(
            k.sk_er(),
            h("07c2a37f44c9a3a0fa8e9bc9423483d037340126eeca673db1d1b7f0f47d9ccb")
        );
        assert_eq!(k.sk_pi(), h("3adfc829283b32dffde2edbab6b2a8cae276cf2dc68b6b88cb8f69a859de0ae053de41c89ca822f85e61c90e63939c99"));
        assert_eq!(k.sk_pr(), h("ea34c72255c39648e91a9df728d5e9aac79a3578d336c093f9cb4c3c8a51b0aa36cfc8c18ac1b2d4439efa0b4868b02d"));
    }

    #[test]
    fn gcm_suite_keys_include_salt_and_no_integrity_keys() {
        let suite = IkeSuite {
            encr: EncrAlgorithm::AesGcm16_256,
            integ: None,
            prf: PrfAlgorithm::HmacSha256,
            dh: DhGroup::Curve25519,
        };
        let k = IkeKeys::derive(suite, &gir(), &ni(), &nr(), SPI_I, SPI_R).unwrap();
        assert_eq!(
            k.sk_d(),
            h("562909e7143ab18640909e366abcf5f672b0783ac1bfc00dd5a6ec6a96f3fddd")
        );
        assert!(k.sk_ai().is_empty() && k.sk_ar().is_empty());
        assert_eq!(
            k.sk_ei(),
            h("cfb13dd4b9977984d8d6d884f4a57921736db739e42555b18f35b053d383ffafb5c1d7ba")
        );
        assert_eq!(
            k.sk_er(),
            h("0d0f9f912ea92e32047946d5477d825849883735461eb480f6a800531fbaedee5cca6bf0")
        );
        assert_eq!(
            k.sk_pi(),
            h("863d9eccdaff19171896e24e185c4e571181b89c072d57b5e591fbabe226851b")
        );
        assert_eq!(
            k.sk_pr(),
            h("ca15e851c80c68dee31c1c91ac96b94a706752f5a363674179c1bc9334b327e1")
        );
    }

    /// RFC 7296 §2.18: old PRF (SHA-384) for SKEYSEED, new PRF (SHA-512) for prf+.
    #[test]
    fn ike_rekey_uses_old_sk_d_and_prf() {
        let new_suite = IkeSuite {
            encr: EncrAlgorithm::AesGcm16_256,
            integ: None,
            prf: PrfAlgorithm::HmacSha512,
            dh: DhGroup::Curve25519,
        };
        let g2 = SharedSecret::from_bytes(&(0x40u8..0x60).collect::<Vec<_>>());
        let k = ibm_keys()
            .rekey(
                new_suite,
                &g2,
                &[0x33; 20],
                &[0x44; 24],
                0x1111_1111_1111_1111,
                0x2222_2222_2222_2222,
            )
            .unwrap();
        assert_eq!(k.suite(), new_suite);
        assert_eq!(k.sk_d(), h("a14636880d8e8df4c98eb644e1ec6b1f4b1352f0c06ae06d9a13ebbe050a767d3ed7d395ca54c63efb1715272bf3632a43c008ec2ca3a85cc07888a8f28f4bf9"));
        assert_eq!(
            k.sk_ei(),
            h("cf86b324f6e91526ebe34ce954d5395c2d5b1335001e9b9dff16a00733bbcadf980a2473")
        );
        assert_eq!(
            k.sk_er(),
            h("e6162290296d2392dd6ea60094095e6b235b9b0a6f1f8cab7699dd802f1993189c8695df")
        );
        assert_eq!(k.sk_pi(), h("f2123c889af55c7a36990a9c0b93fb55bde5b975bd555183b47b889e6e020014bbb75cb40429b7845c72ea4ab4780e6b25177f9516ee4bdf649d6c2df92792ed"));
        assert_eq!(k.sk_pr(), h("5691442838ed71862c068f2c100f6592449d33c4d1c3a241d4e55423be3049c49b46f981142b319bda2e0b5f5096850c46d12450198a17229cbbf8e3096e4261"));
    }

    /// RFC 7296 §2.17 order and RFC 4106 §8.1 salt, without and with PFS.
    #[test]
    fn child_keymat_order_and_salt() {
        let k = ibm_keys();
        let gcm = k
            .child_keys(EncrAlgorithm::AesGcm16_256, None, None, &ni(), &nr())
            .unwrap();
        assert_eq!(
            gcm.initiator_to_responder().encr(),
            h("f5b2ece955854c770372a651c171c539c74ff56bec4e3e4172ee8090aaa4390d14d58fae")
        );
        assert_eq!(
            gcm.responder_to_initiator().encr(),
            h("5906b9e281438eaed5db9eb9f8ad8c0725c1a80c927d52acc4c32caffd76543b73494681")
        );
        assert!(gcm.initiator_to_responder().integ().is_empty());
        assert_eq!(
            gcm.outbound(Role::Initiator).encr(),
            gcm.inbound(Role::Responder).encr()
        );
        assert_eq!(
            gcm.outbound(Role::Responder).encr(),
            gcm.responder_to_initiator().encr()
        );

        let g2 = SharedSecret::from_bytes(&(0x40u8..0x60).collect::<Vec<_>>());
        let cbc = k
            .child_keys(
                EncrAlgorithm::AesCbc128,
                Some(IntegAlgorithm::HmacSha2_256_128),
                Some(&g2),
                &[0x33; 20],
                &[0x44; 24],
            )
            .unwrap();
        let i2r = cbc.initiator_to_responder();
        let r2i = cbc.responder_to_initiator();
        assert_eq!(i2r.encr(), h("bbd0cc3c31134d94334e338f4eddf952"));
        assert_eq!(
            i2r.integ(),
            h("06a91fb5fc3e31d4f8df3076394bc6ea42332336da0e9fcb4eade17578abc469")
        );
        assert_eq!(r2i.encr(), h("aa02a1e014e669ce71ee72774cea4c7e"));
        assert_eq!(
            r2i.integ(),
            h("ac28d6d50dca8a87eca00954ac95b98a7da273345398387bd802e51c8f05f809")
        );
    }

    #[test]
    fn invalid_inputs_are_rejected() {
        let mut bad = IkeSuite::IBM_DEFAULT;
        bad.integ = None;
        assert!(matches!(
            IkeKeys::derive(bad, &gir(), &ni(), &nr(), 1, 2),
            Err(CryptoError::InvalidSuite(_))
        ));
        let gcm_with_integ = IkeSuite {
            encr: EncrAlgorithm::AesGcm16_128,
            integ: Some(IntegAlgorithm::HmacSha2_256_128),
            prf: PrfAlgorithm::HmacSha256,
            dh: DhGroup::Ecp256,
        };
        assert!(gcm_with_integ.validate().is_err());
        assert_eq!(
            IkeKeys::derive(IkeSuite::IBM_DEFAULT, &gir(), &[0; 15], &nr(), 1, 2).unwrap_err(),
            CryptoError::NonceLength(15)
        );
        assert_eq!(
            IkeKeys::derive(IkeSuite::IBM_DEFAULT, &gir(), &ni(), &[0; 257], 1, 2).unwrap_err(),
            CryptoError::NonceLength(257)
        );
        assert!(ibm_keys()
            .child_keys(EncrAlgorithm::AesCbc256, None, None, &ni(), &nr())
            .is_err());
    }

    #[test]
    fn debug_output_holds_no_key_bytes() {
        let k = ibm_keys();
        let text = format!("{k:?}");
        assert!(text.contains("redacted"));
        let sk_d_hex = hex::encode(&k.sk_d()[..4]);
        assert!(!text.contains(&sk_d_hex));
        let c = k
            .child_keys(EncrAlgorithm::AesGcm16_256, None, None, &ni(), &nr())
            .unwrap();
        let text = format!("{c:?} {:?}", c.initiator_to_responder());
        assert!(!text.contains(&hex::encode(&c.initiator_to_responder().encr()[..4])));
        assert!(text.contains("<redacted 36+0 bytes>"));
    }

    /// The IBM default suite end to end: two parties run ECP-384, derive their keys
    /// independently, and protect messages in both directions (RFC 7296 §2.14, §3.14).
    #[test]
    fn ibm_default_suite_end_to_end() {
        let suite = IkeSuite::IBM_DEFAULT;
        let i_dh = DhSecret::from_private_bytes(suite.dh, &[0x21; 48]).unwrap();
        let r_dh = DhSecret::from_private_bytes(suite.dh, &[0x42; 48]).unwrap();
        let (ni, nr) = (vec![0xa5; 32], vec![0x5a; 32]);
        let i_keys = IkeKeys::derive(
            suite,
            &i_dh.shared_secret(r_dh.public_value()).unwrap(),
            &ni,
            &nr,
            7,
            9,
        )
        .unwrap();
        let r_keys = IkeKeys::derive(
            suite,
            &r_dh.shared_secret(i_dh.public_value()).unwrap(),
            &ni,
            &nr,
            7,
            9,
        )
        .unwrap();
        for sender in [Role::Initiator, Role::Responder] {
            let seal = if sender == Role::Initiator {
                &i_keys
            } else {
                &r_keys
            }
            .sk_cipher(sender)
            .unwrap();
            let open = if sender == Role::Initiator {
                &r_keys
            } else {
                &i_keys
            }
            .sk_cipher(sender)
            .unwrap();
            let plaintext = vec![0x29u8; 333];
            let aad = b"IKE header + SK header stand-in".to_vec();
            let mut body = Vec::new();
            seal.seal(&aad, &[0x77; 16], &plaintext, &mut body).unwrap();
            assert_eq!(body.len(), seal.sealed_len(plaintext.len()));
            assert_eq!(open.open(&aad, &body).unwrap(), plaintext);
            // The other direction's keys do not open it.
            let wrong = if sender == Role::Initiator {
                &r_keys
            } else {
                &i_keys
            }
            .sk_cipher(sender.peer())
            .unwrap();
            assert_eq!(
                wrong.open(&aad, &body),
                Err(CryptoError::IntegrityCheckFailed)
            );
        }
        // Both ends compute the same AUTH octets for the same signer.
        let a = i_keys.signed_octets(Role::Initiator, b"msg", &nr, b"\x02\0\0\0id");
        let b = r_keys.signed_octets(Role::Initiator, b"msg", &nr, b"\x02\0\0\0id");
        assert_eq!(a, b);
        assert_ne!(
            a,
            i_keys.signed_octets(Role::Responder, b"msg", &nr, b"\x02\0\0\0id")
        );
    }
}
