//! Users and the audit trail.

use super::*;

#[derive(Template)]
#[template(path = "users.html")]
pub(super) struct UsersPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) users: Vec<(String, &'static str, bool, bool, bool, bool)>,
    pub(super) roles: Vec<&'static str>,
    pub(super) error: String,
    pub(super) created: String,
    pub(super) form: UserForm,
}

/// What the add form held, given back with an error.
#[derive(Default)]
pub(super) struct UserForm {
    pub(super) name: String,
    pub(super) role: String,
}

pub(super) fn users_page(
    c: &Console,
    a: &Auth,
    error: Option<crate::error::Msg>,
    created: String,
    form: UserForm,
) -> Res {
    let users = c
        .users
        .list()
        .into_iter()
        .map(|(n, u)| (n, u.role.name(), u.disabled, u.must_change, u.totp.is_some(), u.totp_required))
        .collect();
    let status = if error.is_none() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let error = error.map(|m| m.text(a.t)).unwrap_or_default();
    page(UsersPage {
        t: a.t,
        nav: nav(a),
        users,
        roles: Role::ALL.iter().map(|r| r.name()).collect(),
        error,
        created,
        form,
    })
    .map(|r| (status, r).into_response())
}

pub(super) async fn users(State(c): State<Arc<Console>>, a: Auth) -> Res {
    a.need(Perm::Users)?;
    users_page(&c, &a, None, String::new(), UserForm::default())
}

/// A role the form names: none, one of ours, or an error saying which.
pub(super) fn role_field(f: &Form) -> Result<Option<Role>, crate::error::Msg> {
    match f.get("role").map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) => Role::parse(r).map(Some).ok_or_else(|| crate::error::Msg::with("users.bad_role", r)),
    }
}

/// Adds an account with a one-time password shown once to the admin.
pub(super) async fn add_user(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Users)?;
    let name = f.get("name").unwrap_or("").trim().to_string();
    let form = UserForm { name: name.clone(), role: f.get("role").unwrap_or("").to_string() };
    let role = match role_field(&f) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return users_page(&c, &a, Some(crate::error::Msg::with("users.bad_role", "")), String::new(), form)
        }
        Err(m) => return users_page(&c, &a, Some(m), String::new(), form),
    };
    c.siem.writable()?;
    let password = crate::users::random_password();
    let (c2, n2, p2) = (Arc::clone(&c), name.clone(), password.clone());
    match blocking(move || c2.users.add(&n2, role, &p2)).await {
        Ok(stored) => {
            c.siem.audit_as(
                &a.session.user,
                &a.peer,
                "console.user_add",
                json!({"user": stored, "role": role.name()}),
            )?;
            users_page(&c, &a, None, password, UserForm::default())
        }
        Err(ConsoleError::Bad(m)) => users_page(&c, &a, Some(m), String::new(), form),
        Err(e) => Err(e),
    }
}

pub(super) async fn update_user(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Users)?;
    let name = f.get("name").unwrap_or("").to_string();
    let role = match role_field(&f) {
        Ok(r) => r,
        Err(m) => return users_page(&c, &a, Some(m), String::new(), UserForm::default()),
    };
    let flag = |k: &str| -> Result<Option<bool>, crate::error::Msg> {
        match f.get(k) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(crate::error::Msg::with("users.bad_value", other)),
        }
    };
    let (disabled, totp_required) = match (flag("disabled"), flag("totp_required")) {
        (Ok(d), Ok(t)) => (d, t),
        (Err(m), _) | (_, Err(m)) => return users_page(&c, &a, Some(m), String::new(), UserForm::default()),
    };
    c.siem.writable()?;
    let change = crate::users::Change { role, disabled, totp_required, totp_reset: f.get("totp_reset") == Some("1") };
    let name = match c.users.update(&name, change.clone()) {
        Ok(stored) => stored,
        Err(ConsoleError::Bad(m)) => return users_page(&c, &a, Some(m), String::new(), UserForm::default()),
        Err(other) => return Err(other),
    };
    let mut created = String::new();
    if f.get("reset") == Some("1") {
        created = crate::users::random_password();
        let (c2, n2, p2) = (Arc::clone(&c), name.clone(), created.clone());
        blocking(move || c2.users.set_password(&n2, &p2, true)).await?;
    }
    c.siem.audit_as(
        &a.session.user,
        &a.peer,
        "console.user_update",
        json!({"user": name, "role": role.map(Role::name), "disabled": disabled, "reset": !created.is_empty(),
               "totp_required": totp_required, "totp_reset": change.totp_reset}),
    )?;
    // Whatever changed, the user signs in again under the new terms.
    if name != a.session.user {
        c.sessions.end_user(&name, None);
    }
    users_page(&c, &a, None, created, UserForm::default())
}

#[derive(Template)]
#[template(path = "audit.html")]
pub(super) struct AuditPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) chain: String,
    pub(super) action: String,
    pub(super) who: String,
    pub(super) entries: Vec<(u64, String, String, String, String, String)>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AuditForm {
    pub(super) action: String,
    pub(super) who: String,
}

pub(super) async fn audit(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<AuditForm>) -> Res {
    a.need(Perm::Audit)?;
    if c.siem.audit.is_none() {
        return Err(ConsoleError::Invalid("no audit trail kept".into()));
    }
    c.siem.audit_as(&a.session.user, &a.peer, "audit.read", json!({"action": f.action, "who": f.who}))?;
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let (action, who) = (nonempty(&f.action), nonempty(&f.who));
    let c2 = Arc::clone(&c);
    let (entries, chain) = blocking(move || {
        let log = c2.siem.audit.as_ref().ok_or(ConsoleError::NotFound)?;
        let e = log.read(action.as_deref(), who.as_deref(), 500).map_err(|e| ConsoleError::Internal(e.to_string()))?;
        Ok((e, log.path().to_path_buf()))
    })
    .await?;
    let chain = match siem::audit::verify(&chain) {
        Ok((n, _)) => format!("{} {n}", a.t.t("audit.chain_ok")),
        Err(e) => format!("{}: {e}", a.t.t("audit.chain_broken")),
    };
    let entries = entries
        .into_iter()
        .rev()
        .map(|e| (e.seq, a.lens.time(e.ts), e.who, e.from, a.t.action(&e.action), e.detail.to_string()))
        .collect();
    page(AuditPage { t: a.t, nav: nav(&a), chain, action: f.action, who: f.who, entries })
}
