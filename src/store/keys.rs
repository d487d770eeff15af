//! Every Redis key name the worker uses, built in one place from the
//! configured prefix (default `4011:1:`). The names are the contract's.

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    fn k(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
    /// hash userid -> `{"xNumber","bindType"}` (written by the binding service).
    pub fn user_axs(&self) -> String {
        self.k("PrivateNumber_user_axs")
    }
    /// hash subId -> XB binding JSON.
    pub fn xb(&self) -> String {
        self.k("PrivateNumber_xb")
    }
    /// hash subId -> XB binding JSON plus `unboundAt`.
    pub fn xb_unbound(&self) -> String {
        self.k("PrivateNumber_xb_unbound")
    }
    /// sorted set subId -> unboundAt: the worker's own index for pruning
    /// `PrivateNumber_xb_unbound` after the retention (not in the contract's
    /// table; nobody else needs to read it).
    pub fn xb_unbound_index(&self) -> String {
        self.k("PrivateNumber_xb_unbound_at")
    }
    /// set of blacklisted numbers; `list_type` 0 = outgoing, 1 = incoming.
    pub fn black(&self, user_id: u64, list_type: u8) -> String {
        self.k(&format!("PrivateNumber_black:{user_id}:{list_type}"))
    }
    /// hash userid -> current phone.
    pub fn user_phone(&self) -> String {
        self.k("PrivateNumber_user_phone")
    }
    /// sorted set of every phone of a user, scored by first-seen time.
    pub fn user_phones(&self, user_id: u64) -> String {
        self.k(&format!("PrivateNumber_user_phones:{user_id}"))
    }
    /// hash phone -> userid.
    pub fn phone_user(&self) -> String {
        self.k("PrivateNumber_phone_user")
    }
    /// string: the key (hex) that signs the worker's own headers on the
    /// copies it forwards (`amqp::headers`), shared by every replica;
    /// created by the first worker that needs it. Not in the contract's
    /// table: nobody else reads it.
    pub fn signing_key(&self) -> String {
        self.k("axn_worker_signing_key")
    }
    /// hash: one number of the binding API's pool (platformId, poolId,
    /// regionId, numberState, bindState, userId, telA, subId, ...).
    pub fn number(&self, number: &str) -> String {
        self.k(&format!("PrivateNumber_number:{number}"))
    }
    /// set: every number of a platform.
    pub fn pool(&self, platform: &str) -> String {
        self.k(&format!("PrivateNumber_pool:{platform}"))
    }
    /// set: the numbers of a platform that can be bound now.
    pub fn pool_free(&self, platform: &str) -> String {
        self.k(&format!("PrivateNumber_pool_free:{platform}"))
    }
    /// set: every platform id that has numbers.
    pub fn platforms(&self) -> String {
        self.k("PrivateNumber_platforms")
    }
    /// hash platformId -> the user's AX number on it (the bind lock).
    pub fn user_ax(&self, user: u64) -> String {
        format!("{}{user}", self.k("PrivateNumber_user_ax:"))
    }
    /// string: the user's temporary number of fault mode.
    pub fn user_fault(&self, user: u64) -> String {
        format!("{}{user}", self.k("PrivateNumber_user_fault:"))
    }
    /// The names the platform's Lua scripts use, as JSON: prefixes to which
    /// a script appends an id (`number`, `pool`, `pool_free`, `user_ax`,
    /// `user_fault`) and whole names. The scripts get them from here rather
    /// than spelling key names themselves.
    pub fn platform_names(&self) -> String {
        serde_json::json!({
            "number": self.number(""),
            "pool": self.pool(""),
            "pool_free": self.pool_free(""),
            "user_ax": self.k("PrivateNumber_user_ax:"),
            "user_fault": self.k("PrivateNumber_user_fault:"),
            "user_axs": self.user_axs(),
            "xb": self.xb(),
            "xb_expiry": self.xb_expiry(),
            "platforms": self.platforms(),
        })
        .to_string()
    }
    /// sorted set subId -> expiresAt of the XB bindings the API made.
    pub fn xb_expiry(&self) -> String {
        self.k("PrivateNumber_xb_expiry")
    }
    /// hash op -> error kind: the simulated carrier fails the next `op` once.
    pub fn simulated_failures(&self) -> String {
        self.k("axn_simulated_carrier_fail")
    }
    /// string: a successful API answer, kept for a retried request.
    pub fn api_replay(&self, fingerprint: &str) -> String {
        self.k(&format!("PrivateNumber_api_replay:{fingerprint}"))
    }
    /// string: the call record dedupe mark (`1`, or a publish lease).
    pub fn calllog(&self, call_id: &str) -> String {
        self.k(&format!("PrivateNumber_calllog:{call_id}"))
    }
    /// hash number -> uid (number-mapping API).
    pub fn uid_by_phone(&self) -> String {
        self.k("PrivateNumber_uid_by_phone")
    }
    /// hash uid -> number (number-mapping API).
    pub fn phone_by_uid(&self) -> String {
        self.k("PrivateNumber_phone_by_uid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let k = Keys::new("4011:1:");
        assert_eq!(k.xb(), "4011:1:PrivateNumber_xb");
        assert_eq!(k.xb_unbound(), "4011:1:PrivateNumber_xb_unbound");
        assert_eq!(k.user_axs(), "4011:1:PrivateNumber_user_axs");
        assert_eq!(k.black(74705, 0), "4011:1:PrivateNumber_black:74705:0");
        assert_eq!(k.user_phone(), "4011:1:PrivateNumber_user_phone");
        assert_eq!(
            k.user_phones(74705),
            "4011:1:PrivateNumber_user_phones:74705"
        );
        assert_eq!(k.phone_user(), "4011:1:PrivateNumber_phone_user");
        assert_eq!(k.calllog("ab12"), "4011:1:PrivateNumber_calllog:ab12");
        assert_eq!(k.uid_by_phone(), "4011:1:PrivateNumber_uid_by_phone");
        assert_eq!(k.phone_by_uid(), "4011:1:PrivateNumber_phone_by_uid");
    }
}
