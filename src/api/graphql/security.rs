//! Charger security for operators (extension of the contract): security profiles, the
//! certificates the CSMS CA signed, revocation, Basic password rotation and security events.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::auth::require_staff;
use super::chargers::{audit, run_command, ChargerView};
use super::error::{ApiError, ApiResult};
use crate::auth::password;
use crate::context::AppContext;
use crate::domain::{ChargePointId, Role};
use crate::ocpp::command::ChargerCommand;
use crate::store::chargers;
use crate::store::security::{self as store, CertificateRecord, SecurityEventRecord};

/// A certificate the CSMS CA signed for a charger.
#[derive(SimpleObject)]
pub struct ChargerCertificate {
    pub serial: String,
    pub certificate_type: String,
    pub subject: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    /// PEM
    pub certificate: String,
}

impl From<CertificateRecord> for ChargerCertificate {
    fn from(c: CertificateRecord) -> Self {
        Self {
            serial: c.serial,
            certificate_type: c.certificate_type,
            subject: c.subject,
            not_before: c.not_before,
            not_after: c.not_after,
            issued_at: c.issued_at,
            revoked_at: c.revoked_at,
            revoked_reason: c.revoked_reason,
            certificate: c.certificate_pem,
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEventSource {
    Charger,
    Server,
}

/// A security event a charger reported (SecurityEventNotification) or the server observed.
#[derive(SimpleObject)]
pub struct SecurityEvent {
    pub id: ID,
    pub charger_id: Option<ID>,
    pub source: SecurityEventSource,
    /// e.g. `FirmwareUpdated`, `TamperDetectionActivated`, `SecurityProfileViolation`
    #[graphql(name = "type")]
    pub event_type: String,
    pub tech_info: Option<String>,
    pub critical: bool,
    pub occurred_at: DateTime<Utc>,
}

impl From<SecurityEventRecord> for SecurityEvent {
    fn from(e: SecurityEventRecord) -> Self {
        Self {
            id: ID(e.id.to_string()),
            charger_id: e.charger_id.map(ID),
            source: if e.source == "charger" {
                SecurityEventSource::Charger
            } else {
                SecurityEventSource::Server
            },
            event_type: e.event_type,
            tech_info: e.tech_info,
            critical: e.critical,
            occurred_at: e.occurred_at,
        }
    }
}

/// A charger's certificates, newest first (OPERATOR or ADMIN).
pub async fn certificates(
    ctx: &Context<'_>,
    charger_id: &str,
    first: i32,
) -> ApiResult<Vec<ChargerCertificate>> {
    require_staff(ctx)?;
    let app = ctx.data_unchecked::<AppContext>();
    Ok(
        store::certificates(&app.db, charger_id, i64::from(first.clamp(1, 100)))
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    )
}

/// Security events, newest first, of one charger or all (OPERATOR or ADMIN).
pub async fn events(
    ctx: &Context<'_>,
    charger_id: Option<&str>,
    first: i32,
) -> ApiResult<Vec<SecurityEvent>> {
    require_staff(ctx)?;
    if !(1..=500).contains(&first) {
        return Err(ApiError::BadUserInput(
            "first must be between 1 and 500".into(),
        ));
    }
    let app = ctx.data_unchecked::<AppContext>();
    Ok(store::events(&app.db, charger_id, i64::from(first))
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

fn require_admin(ctx: &Context<'_>) -> ApiResult<uuid::Uuid> {
    let (id, role) = require_staff(ctx)?;
    if role != Role::Admin {
        return Err(ApiError::Forbidden(
            "this operation changes a charger's security: ADMIN only".into(),
        ));
    }
    Ok(id)
}

/// A new Basic password, as the server generates them: 20 random letters and digits (about
/// 119 bits; the 1.6 whitepaper allows 16 to 20 bytes, 2.0.1 16 to 40 characters).
fn generate_password() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 20)
}

/// What `rotateChargerPassword` returns: the new password, shown this once.
#[derive(SimpleObject)]
pub struct RotatedPassword {
    pub charger_id: ID,
    /// Shown once and never again; the charger already has it.
    pub password: String,
}

#[derive(InputObject)]
pub struct SecurityProfileInput {
    pub charger_id: ID,
    /// 2 or 3: security profiles are only ever raised
    pub profile: i32,
    /// 2.0.1: the CSMS URL the station connects to with the new profile (e.g.
    /// `wss://csms.example.com:8443/ocpp`), and the network configuration slot to use (1 by
    /// default); ignored for 1.6, which keeps its URL
    pub csms_url: Option<String>,
    pub configuration_slot: Option<i32>,
}

#[derive(Default)]
pub struct SecurityQuery;

#[Object]
impl SecurityQuery {
    /// OPERATOR or ADMIN: security events, newest first, of one charger or of all (extension).
    async fn security_events(
        &self,
        ctx: &Context<'_>,
        charger_id: Option<ID>,
        #[graphql(default = 50)] first: i32,
    ) -> ApiResult<Vec<SecurityEvent>> {
        events(ctx, charger_id.as_ref().map(|id| id.as_str()), first).await
    }
}

#[derive(Default)]
pub struct SecurityMutation;

#[Object]
impl SecurityMutation {
    /// ADMIN: revokes a certificate the CSMS CA signed for the charger. The charger's next TLS
    /// handshake with it fails (on every replica within seconds); a connection open with it is
    /// closed now (extension).
    async fn revoke_charger_certificate(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        serial: String,
        reason: Option<String>,
    ) -> ApiResult<ChargerCertificate> {
        let admin = require_admin(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = ChargePointId::parse(charger_id.as_str())?;
        let reason = reason.unwrap_or_else(|| "revoked by an operator".into());
        if reason.chars().count() > 200 {
            return Err(ApiError::BadUserInput(
                "reason: at most 200 characters".into(),
            ));
        }
        let serial = serial.trim().to_ascii_lowercase();
        let revoked = store::revoke(&app.db, id.as_str(), &serial, &reason)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such certificate of this charger".into()))?;
        if let Err(e) = app.security.refresh_revoked(&app.db).await {
            tracing::warn!(error = %e, "could not refresh the revoked certificates at once");
        }
        // a connection opened with the certificate ends now; the charger reconnects and is
        // refused at the TLS handshake
        super::chargers::disconnect(app, id.as_str(), "its certificate was revoked").await;
        crate::security::record_server_event(
            &app.db,
            Some(id.as_str()),
            "CertificateRevoked",
            format!("serial {serial}: {reason}"),
            false,
        )
        .await;
        audit(
            app,
            admin,
            "revokeChargerCertificate",
            id.as_str(),
            json!({ "serial": serial }),
        )
        .await;
        Ok(revoked.into())
    }

    /// ADMIN: the server generates a new Basic password and sets it on the charger (1.6
    /// ChangeConfiguration AuthorizationKey with its hex encoding, 2.0.1 SetVariables
    /// SecurityCtrlr BasicAuthPassword). Once the charger accepts it, both passwords work until the charger
    /// first connects with the new one; then only the new one does. The password is returned
    /// this once (extension).
    async fn rotate_charger_password(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
    ) -> ApiResult<RotatedPassword> {
        let admin = require_admin(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = ChargePointId::parse(charger_id.as_str())?;
        chargers::find(&app.db, id.as_str())
            .await?
            .ok_or_else(|| ApiError::NotFound("charger not found".into()))?;
        let new_password = generate_password();
        let phc = password::hash(new_password.clone())
            .await
            .map_err(ApiError::internal)?;
        // kept before the charger is told, so a charger that switches at once is let in
        if !store::set_pending_password(&app.db, id.as_str(), &phc).await? {
            return Err(ApiError::BadUserInput(
                "a password rotation of this charger is still pending: the charger has not yet \
                 connected with the new password"
                    .into(),
            ));
        }
        // the charger's actor maps it onto its protocol version
        let command = ChargerCommand::SetBasicPassword {
            password: new_password.clone(),
        };
        let answer = run_command(app, id.as_str(), command).await;
        // RebootRequired: the charger uses it after its reboot. No answer at all (a timeout,
        // the connection gone): it may have applied it, so the new one stays accepted too
        let accepted = matches!(
            answer.as_ref().ok().and_then(answer_status),
            Some("Accepted" | "RebootRequired")
        );
        let unknown = answer.is_err();
        audit(
            app,
            admin,
            "rotateChargerPassword",
            id.as_str(),
            json!({ "accepted": accepted }),
        )
        .await;
        if !accepted {
            // refused: the charger keeps its current password and the new one is forgotten;
            // unanswered: both stay accepted (the charger may have switched)
            if !unknown {
                store::clear_pending_password(&app.db, id.as_str(), &phc).await?;
            }
            return Err(match answer {
                Err(e) => e,
                Ok(reply) => ApiError::ChargerRejected(format!(
                    "the charger did not accept the new password: {reply}"
                )),
            });
        }
        tracing::info!(charger_id = %id, "charger password rotated; the old one works until the charger uses the new one");
        Ok(RotatedPassword {
            charger_id: ID(id.to_string()),
            password: new_password,
        })
    }

    /// ADMIN: raises a charger's security profile. The charger is told (1.6 ChangeConfiguration
    /// SecurityProfile and a hard Reset; 2.0.1 SetNetworkProfile, NetworkConfigurationPriority
    /// and a Reset) and
    /// may still connect at its old profile until it first connects at the new one (the spec's
    /// fallback); from then on only the new one (extension).
    async fn raise_charger_security_profile(
        &self,
        ctx: &Context<'_>,
        input: SecurityProfileInput,
    ) -> ApiResult<ChargerView> {
        let admin = require_admin(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = ChargePointId::parse(input.charger_id.as_str())?;
        let charger = chargers::find(&app.db, id.as_str())
            .await?
            .ok_or_else(|| ApiError::NotFound("charger not found".into()))?;
        let profile = i16::try_from(input.profile)
            .ok()
            .filter(|p| (2..=3).contains(p))
            .ok_or_else(|| ApiError::BadUserInput("profile must be 2 or 3".into()))?;
        if profile <= charger.security_profile {
            return Err(ApiError::BadUserInput(format!(
                "the charger already uses security profile {}; profiles are only raised",
                charger.security_profile
            )));
        }
        if profile == 3
            && app
                .security
                .tls
                .as_ref()
                .is_none_or(|t| !t.client_certificates_enabled())
        {
            return Err(ApiError::BadUserInput(
                "security profile 3 needs the TLS listener with client certificates (OCPP_CLIENT_CA or a CSMS CA)".into(),
            ));
        }
        let commands: Vec<ChargerCommand> = if charger.protocol.as_deref() == Some("OCPP16") {
            // the charger reconnects with the new profile after a hard reset (OCA TC_083)
            vec![
                ChargerCommand::Raw {
                    action: "ChangeConfiguration".into(),
                    payload: json!({ "key": "SecurityProfile", "value": profile.to_string() }),
                },
                ChargerCommand::Reset { hard: true },
            ]
        } else {
            let url = input.csms_url.ok_or_else(|| {
                ApiError::BadUserInput("csmsUrl is needed for an OCPP 2.0.1 station".into())
            })?;
            let slot = input.configuration_slot.unwrap_or(1);
            vec![
                ChargerCommand::Raw {
                    action: "SetNetworkProfile".into(),
                    payload: json!({
                        "configurationSlot": slot,
                        "connectionData": {
                            "ocppVersion": "OCPP20",
                            "ocppTransport": "JSON",
                            "ocppCsmsUrl": url,
                            "messageTimeout": 30,
                            "securityProfile": profile,
                            "ocppInterface": "Wired0"
                        }
                    }),
                },
                ChargerCommand::Raw {
                    action: "SetVariables".into(),
                    payload: json!({ "setVariableData": [{
                        "attributeValue": slot.to_string(),
                        "component": { "name": "OCPPCommCtrlr" },
                        "variable": { "name": "NetworkConfigurationPriority" }
                    }]}),
                },
                ChargerCommand::Reset { hard: false },
            ]
        };
        store::request_profile(&app.db, id.as_str(), profile).await?;
        for command in commands {
            let reply = match run_command(app, id.as_str(), command).await {
                Ok(reply) => reply,
                Err(e) => {
                    store::request_profile_cancel(&app.db, id.as_str()).await?;
                    return Err(e);
                }
            };
            if !matches!(
                answer_status(&reply),
                Some("Accepted" | "Scheduled" | "RebootRequired")
            ) {
                store::request_profile_cancel(&app.db, id.as_str()).await?;
                return Err(ApiError::ChargerRejected(format!(
                    "the charger refused the new security profile: {reply}"
                )));
            }
        }
        audit(
            app,
            admin,
            "raiseChargerSecurityProfile",
            id.as_str(),
            json!({ "profile": profile }),
        )
        .await;
        let record = chargers::find(&app.db, id.as_str())
            .await?
            .ok_or_else(|| ApiError::NotFound("charger not found".into()))?;
        Ok(ChargerView(record))
    }
}

/// Root certificates an operator installs in a charger's trust store (InstallCertificate).
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum InstallCertificateUse {
    /// the CSMS's root (1.6: CentralSystemRootCertificate)
    CsmsRootCertificate,
    ManufacturerRootCertificate,
    /// 2.0.1 only
    #[graphql(name = "V2G_ROOT_CERTIFICATE")]
    V2gRootCertificate,
    /// 2.0.1 only
    #[graphql(name = "MO_ROOT_CERTIFICATE")]
    MoRootCertificate,
}

impl InstallCertificateUse {
    fn ocpp(self, v16: bool) -> ApiResult<&'static str> {
        Ok(match (self, v16) {
            (Self::CsmsRootCertificate, true) => "CentralSystemRootCertificate",
            (Self::CsmsRootCertificate, false) => "CSMSRootCertificate",
            (Self::ManufacturerRootCertificate, _) => "ManufacturerRootCertificate",
            (Self::V2gRootCertificate, false) => "V2GRootCertificate",
            (Self::MoRootCertificate, false) => "MORootCertificate",
            (_, true) => {
                return Err(ApiError::BadUserInput(
                    "OCPP 1.6 chargers hold only CSMS and manufacturer root certificates".into(),
                ))
            }
        })
    }
}

/// Certificates a charger can list (GetInstalledCertificateIds).
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum InstalledCertificateUse {
    CsmsRootCertificate,
    ManufacturerRootCertificate,
    #[graphql(name = "V2G_ROOT_CERTIFICATE")]
    V2gRootCertificate,
    #[graphql(name = "MO_ROOT_CERTIFICATE")]
    MoRootCertificate,
    /// 2.0.1 only: the station's V2G certificate chain
    #[graphql(name = "V2G_CERTIFICATE_CHAIN")]
    V2gCertificateChain,
}

impl InstalledCertificateUse {
    fn ocpp(self, v16: bool) -> ApiResult<&'static str> {
        match self {
            Self::V2gCertificateChain if !v16 => Ok("V2GCertificateChain"),
            Self::V2gCertificateChain => Err(ApiError::BadUserInput(
                "OCPP 1.6 chargers have no V2G certificate chain".into(),
            )),
            Self::CsmsRootCertificate => InstallCertificateUse::CsmsRootCertificate.ocpp(v16),
            Self::ManufacturerRootCertificate => {
                InstallCertificateUse::ManufacturerRootCertificate.ocpp(v16)
            }
            Self::V2gRootCertificate => InstallCertificateUse::V2gRootCertificate.ocpp(v16),
            Self::MoRootCertificate => InstallCertificateUse::MoRootCertificate.ocpp(v16),
        }
    }
}

/// How a charger identifies one of its certificates (OCPP CertificateHashData).
#[derive(SimpleObject, InputObject, Clone, serde::Serialize, serde::Deserialize)]
#[graphql(input_name = "CertificateHashDataInput")]
#[serde(rename_all = "camelCase")]
pub struct CertificateHashData {
    /// SHA256, SHA384 or SHA512
    pub hash_algorithm: String,
    pub issuer_name_hash: String,
    pub issuer_key_hash: String,
    pub serial_number: String,
}

/// A certificate a charger reported, with its type (2.0.1) and the certificates below it.
#[derive(SimpleObject)]
pub struct InstalledCertificate {
    /// the OCPP name of its use, e.g. `CSMSRootCertificate`; null from 1.6 chargers, which
    /// list one type at a time
    pub certificate_type: Option<String>,
    pub hash_data: CertificateHashData,
    pub children: Vec<CertificateHashData>,
}

/// The answer to `chargerInstalledCertificates`.
#[derive(SimpleObject)]
pub struct InstalledCertificates {
    /// `Accepted` or `NotFound`, as the charger answered
    pub status: String,
    pub certificates: Vec<InstalledCertificate>,
}

/// The charger's protocol: true for 1.6.
async fn speaks_16(app: &AppContext, id: &str) -> ApiResult<bool> {
    let charger = chargers::find(&app.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("charger not found".into()))?;
    Ok(charger.protocol.as_deref() == Some("OCPP16"))
}

fn status_of(reply: &serde_json::Value) -> String {
    reply["status"].as_str().unwrap_or("Unknown").to_string()
}

/// The status of an answer: `status`, or a SetVariables answer's first attribute status.
fn answer_status(reply: &serde_json::Value) -> Option<&str> {
    reply["status"]
        .as_str()
        .or_else(|| reply["setVariableResult"][0]["attributeStatus"].as_str())
}

/// Runs `command` on the charger, audits it with the charger's status added to `details`,
/// and returns that status.
async fn run_audited(
    app: &AppContext,
    admin: uuid::Uuid,
    action: &str,
    charger_id: &str,
    command: ChargerCommand,
    mut details: serde_json::Value,
) -> ApiResult<String> {
    let reply = run_command(app, charger_id, command).await;
    let status = reply.as_ref().map(status_of).unwrap_or_default();
    details["status"] = json!(status);
    audit(app, admin, action, charger_id, details).await;
    reply?;
    Ok(status)
}

#[derive(Default)]
pub struct CertificateQuery;

#[Object]
impl CertificateQuery {
    /// OPERATOR or ADMIN: the certificates in a charger's trust store, asked of the charger
    /// (GetInstalledCertificateIds); all types when none are given (2.0.1), exactly one type
    /// for 1.6 chargers (extension).
    async fn charger_installed_certificates(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        certificate_types: Option<Vec<InstalledCertificateUse>>,
    ) -> ApiResult<InstalledCertificates> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = ChargePointId::parse(charger_id.as_str())?;
        let v16 = speaks_16(app, id.as_str()).await?;
        let types = certificate_types
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.ocpp(v16))
            .collect::<ApiResult<Vec<_>>>()?;
        let payload = if v16 {
            let [only] = types.as_slice() else {
                return Err(ApiError::BadUserInput(
                    "OCPP 1.6 chargers list one certificate type at a time".into(),
                ));
            };
            json!({ "certificateType": only })
        } else if types.is_empty() {
            json!({})
        } else {
            json!({ "certificateType": types })
        };
        let reply = run_command(
            app,
            id.as_str(),
            ChargerCommand::Raw {
                action: "GetInstalledCertificateIds".into(),
                payload,
            },
        )
        .await?;
        let parse =
            |v: &serde_json::Value| serde_json::from_value::<CertificateHashData>(v.clone()).ok();
        let certificates = if v16 {
            reply["certificateHashData"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(parse)
                .map(|hash_data| InstalledCertificate {
                    certificate_type: None,
                    hash_data,
                    children: Vec::new(),
                })
                .collect()
        } else {
            reply["certificateHashDataChain"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|chain| {
                    Some(InstalledCertificate {
                        certificate_type: chain["certificateType"].as_str().map(str::to_string),
                        hash_data: parse(&chain["certificateHashData"])?,
                        children: chain["childCertificateHashData"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(parse)
                            .collect(),
                    })
                })
                .collect()
        };
        Ok(InstalledCertificates {
            status: status_of(&reply),
            certificates,
        })
    }
}

/// Which certificate a charger is asked to renew.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum CertificateSigningUse {
    /// its TLS client certificate (security profile 3)
    ChargingStationCertificate,
    /// 2.0.1 only: its ISO 15118 certificate
    #[graphql(name = "V2G_CERTIFICATE")]
    V2gCertificate,
    /// 2.0.1 only: both
    Combined,
}

#[derive(Default)]
pub struct CertificateMutation;

#[Object]
impl CertificateMutation {
    /// ADMIN: asks the charger to send a new certificate signing request now (2.0.1
    /// TriggerMessage SignChargingStationCertificate / SignV2GCertificate /
    /// SignCombinedCertificate; 1.6 ExtendedTriggerMessage SignChargePointCertificate). The
    /// charger's status is returned; its SignCertificate follows and is signed as usual
    /// (extension).
    async fn renew_charger_certificate(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        #[graphql(default_with = "CertificateSigningUse::ChargingStationCertificate")]
        certificate_type: CertificateSigningUse,
    ) -> ApiResult<String> {
        let admin = require_admin(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = ChargePointId::parse(charger_id.as_str())?;
        let v16 = speaks_16(app, id.as_str()).await?;
        let command = match (v16, certificate_type) {
            (true, CertificateSigningUse::ChargingStationCertificate) => ChargerCommand::Raw {
                action: "ExtendedTriggerMessage".into(),
                payload: json!({ "requestedMessage": "SignChargePointCertificate" }),
            },
            (true, _) => {
                return Err(ApiError::BadUserInput(
                    "OCPP 1.6 chargers have no ISO 15118 certificate".into(),
                ))
            }
            (false, kind) => ChargerCommand::Raw {
                action: "TriggerMessage".into(),
                payload: json!({ "requestedMessage": match kind {
                    CertificateSigningUse::ChargingStationCertificate => "SignChargingStationCertificate",
                    CertificateSigningUse::V2gCertificate => "SignV2GCertificate",
                    CertificateSigningUse::Combined => "SignCombinedCertificate",
                }}),
            },
        };
        run_audited(
            app,
            admin,
            "renewChargerCertificate",
            id.as_str(),
            command,
            json!({}),
        )
        .await
    }

    /// ADMIN: installs a root certificate (PEM) in the charger's trust store
    /// (InstallCertificate); the charger's status (`Accepted`, `Rejected`, `Failed`) is
    /// returned (extension).
    async fn install_charger_certificate(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        certificate_type: InstallCertificateUse,
        certificate: String,
    ) -> ApiResult<String> {
        let admin = require_admin(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = ChargePointId::parse(charger_id.as_str())?;
        if certificate.len() > 5500 {
            return Err(ApiError::BadUserInput(
                "certificate: at most 5500 characters (OCPP)".into(),
            ));
        }
        let parses = rustls_pemfile::certs(&mut certificate.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .filter(|certs| certs.len() == 1)
            .is_some_and(|certs| x509_parser::parse_x509_certificate(&certs[0]).is_ok());
        if !parses {
            return Err(ApiError::BadUserInput(
                "certificate must be one PEM X.509 certificate".into(),
            ));
        }
        let v16 = speaks_16(app, id.as_str()).await?;
        let kind = certificate_type.ocpp(v16)?;
        let command = ChargerCommand::Raw {
            action: "InstallCertificate".into(),
            payload: json!({ "certificateType": kind, "certificate": certificate }),
        };
        let details = json!({ "certificateType": kind });
        run_audited(
            app,
            admin,
            "installChargerCertificate",
            id.as_str(),
            command,
            details,
        )
        .await
    }

    /// ADMIN: deletes a certificate from the charger's trust store (DeleteCertificate); the
    /// charger's status (`Accepted`, `Failed`, `NotFound`) is returned (extension).
    async fn delete_charger_certificate(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        hash_data: CertificateHashData,
    ) -> ApiResult<String> {
        let admin = require_admin(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = ChargePointId::parse(charger_id.as_str())?;
        let details = json!({ "serialNumber": hash_data.serial_number });
        let command = ChargerCommand::Raw {
            action: "DeleteCertificate".into(),
            payload: json!({ "certificateHashData": hash_data }),
        };
        run_audited(
            app,
            admin,
            "deleteChargerCertificate",
            id.as_str(),
            command,
            details,
        )
        .await
    }
}
