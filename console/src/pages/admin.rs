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
    /// The filter as typed, given back.
    pub(super) f: AuditForm,
    /// Why the filter was refused (the form keeps what was typed).
    pub(super) error: String,
    pub(super) entries: Vec<(u64, String, String, String, String, String)>,
    pub(super) total: usize,
    pub(super) page: usize,
    pub(super) pages: usize,
    pub(super) prev: String,
    pub(super) next: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AuditForm {
    pub(super) action: String,
    pub(super) who: String,
    /// An alert, incident, rule, user or flow id.
    pub(super) target: String,
    /// Local times in the reader's zone (`2026-12-07T21:05`).
    pub(super) from: String,
    pub(super) to: String,
    pub(super) page: usize,
}

/// Entries on one page of the audit log.
const AUDIT_PER_PAGE: usize = 100;

/// A time typed in the reader's zone, as epoch seconds: `YYYY-MM-DD`,
/// `YYYY-MM-DDTHH:MM[:SS]` (a `datetime-local` field) or with a space.
fn local_time(lens: &Lens, s: &str) -> Option<f64> {
    use chrono::TimeZone;
    let s = s.trim();
    let naive = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0))?;
    Some(lens.tz.from_local_datetime(&naive).earliest()?.timestamp() as f64)
}

pub(super) async fn audit(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<AuditForm>) -> Res {
    a.need(Perm::Audit)?;
    if c.siem.audit.is_none() {
        return Err(ConsoleError::Invalid("no audit trail kept".into()));
    }
    let nonempty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let time = |s: &str| -> Result<Option<f64>, String> {
        match nonempty(s) {
            None => Ok(None),
            Some(v) => local_time(&a.lens, &v).map(Some).ok_or(v),
        }
    };
    let (from, to) = match (time(&f.from), time(&f.to)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(bad), _) | (_, Err(bad)) => {
            let error = crate::error::Msg::with("audit.bad_time", bad.as_str()).text(a.t);
            return audit_page(&c, &a, f, error, (0, Vec::new())).map(|r| (StatusCode::BAD_REQUEST, r).into_response());
        }
    };
    let filter = siem::audit::AuditFilter {
        action: nonempty(&f.action),
        who: nonempty(&f.who),
        target: nonempty(&f.target),
        from,
        to,
    };
    // Reading page after page of one filter is one reading: audited once,
    // at its first page.
    if f.page <= 1 {
        c.siem.audit_as(
            &a.session.user,
            &a.peer,
            "audit.read",
            json!({"action": f.action, "who": f.who, "target": f.target, "from": from, "to": to}),
        )?;
    }
    let c2 = Arc::clone(&c);
    let offset = f.page.saturating_sub(1) * AUDIT_PER_PAGE;
    let found = blocking(move || {
        let log = c2.siem.audit.as_ref().ok_or(ConsoleError::NotFound)?;
        Ok(log.query(&filter, offset, AUDIT_PER_PAGE))
    })
    .await?;
    audit_page(&c, &a, f, String::new(), found)
}

fn audit_page(
    c: &Console,
    a: &Auth,
    f: AuditForm,
    error: String,
    (total, entries): (usize, Vec<siem::audit::AuditEntry>),
) -> Res {
    let chain = match c.siem.audit.as_ref().map(|l| siem::audit::verify(l.path())) {
        Some(Ok((n, _))) => format!("{} {n}", a.t.t("audit.chain_ok")),
        Some(Err(e)) => format!("{}: {e}", a.t.t("audit.chain_broken")),
        None => String::new(),
    };
    let entries = entries
        .into_iter()
        .map(|e| (e.seq, a.lens.time(e.ts), e.who, e.from, a.t.action(&e.action), e.detail.to_string()))
        .collect();
    let pages = total.div_ceil(AUDIT_PER_PAGE).max(1);
    let page_no = f.page.clamp(1, pages);
    let link = |p: usize| {
        format!(
            "/audit?action={}&who={}&target={}&from={}&to={}&page={p}",
            enc(&f.action),
            enc(&f.who),
            enc(&f.target),
            enc(&f.from),
            enc(&f.to)
        )
    };
    let (prev, next) = (
        if page_no > 1 { link(page_no - 1) } else { String::new() },
        if page_no < pages { link(page_no + 1) } else { String::new() },
    );
    page(AuditPage { t: a.t, nav: nav(a), chain, f, error, entries, total, page: page_no, pages, prev, next })
}
