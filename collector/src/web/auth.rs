//! Users, sessions, CSRF and throttling for the dashboard.
//!
//! Users and sessions live in the store (written through the register writer) and are
//! mirrored here in memory; this module is their only writer. Passwords are argon2id PHC
//! strings, hashed and checked in `spawn_blocking`. A session is a random token in an
//! `HttpOnly; SameSite=Strict` cookie (`Secure` when `[web] secure_cookies` or `[tls] https`); the store keeps
//! only its SHA-256. Every POST must pass the Origin check (a present `Origin`/`Referer` must
//! name this host) and carry the form token: the session's own, or before login the
//! `caretaker_form` cookie's (double submit). Wrong passwords are throttled per user name and
//! per address, and an unknown user gets the same answer (and the same hashing work) as a
//! wrong password.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::PageError;
use super::pages::{Nav, render};
use crate::errors::{Failure, Kind};
use crate::http::ApiState;
use crate::model::{Role, Session, User};
use crate::register::{Job, Register, WebRecords};
use crate::store::{Store, StoreError};

pub const SESSION_COOKIE: &str = "caretaker_session";
pub const FORM_COOKIE: &str = "caretaker_form";
/// How long a setup link works.
const SETUP_TTL: time::Duration = time::Duration::hours(24);

/// Counts events per key within a sliding window.
pub struct Limiter {
    max: u32,
    window: Duration,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` while `key` has used up its allowance.
    pub fn blocked(&self, key: &str) -> Option<Duration> {
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let queue = hits.get_mut(key)?;
        while queue
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            queue.pop_front();
        }
        (queue.len() >= self.max as usize)
            .then(|| self.window.saturating_sub(now.duration_since(queue[0])))
    }

    pub fn hit(&self, key: &str) {
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if hits.len() > 10_000 {
            let window = self.window;
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let queue = hits.entry(key.to_owned()).or_default();
        queue.push_back(now);
        while queue.len() > self.max as usize {
            queue.pop_front();
        }
    }

    pub fn clear(&self, key: &str) {
        self.hits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// A one-time link to set a password (the first admin, or a user added without one).
#[derive(Debug, Clone)]
struct Setup {
    /// `None`: create the first admin, name chosen on the form.
    user: Option<String>,
    expires: OffsetDateTime,
}

/// Who is looking at a page.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: User,
    pub session: Session,
}

impl Viewer {
    /// Read-only users see everything and change nothing.
    pub fn may_act(&self) -> Result<(), PageError> {
        if self.user.role.can_act() {
            Ok(())
        } else {
            Err(PageError::forbidden(
                "Your account is read-only: it can look at everything but change nothing.",
            ))
        }
    }
}

pub struct Auth {
    register: Register,
    users: RwLock<HashMap<String, User>>,
    sessions: RwLock<HashMap<String, Session>>,
    setups: Mutex<HashMap<String, Setup>>,
    /// One change of users/sessions at a time (check, then write).
    writes: tokio::sync::Mutex<()>,
    by_user: Limiter,
    by_addr: Limiter,
    ttl: time::Duration,
    pub secure: bool,
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Hashes a password with argon2id off the async threads.
pub async fn hash_password(password: String) -> Result<String, Failure> {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Failure::new(Kind::Internal, format!("hashing the password: {e}")))
    })
    .await
    .map_err(|e| Failure::new(Kind::Internal, e.to_string()))?
}

/// A hash that matches nothing anyone types: unknown users are checked against it, so they
/// cost the same time as known ones.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(random_token().as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::PasswordVerifier;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(&hash) else {
            return false;
        };
        let ok = argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && known
    })
    .await
    .unwrap_or(false)
}

pub fn check_password_rules(password: &str) -> Result<(), Failure> {
    if password.chars().count() < 8 {
        return Err(Failure::invalid("a password needs at least 8 characters"));
    }
    if password.len() > 1024 {
        return Err(Failure::invalid("a password is limited to 1,024 bytes"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Failure::invalid(
            "a user name is 1 to 64 letters, digits, '.', '-', '_' or '@'",
        ))
    }
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl Auth {
    pub fn load(
        store: Arc<dyn Store>,
        register: Register,
        config: &super::WebConfig,
    ) -> Result<Self, StoreError> {
        let now = OffsetDateTime::now_utc();
        let users = store
            .users()?
            .into_iter()
            .map(|u| (u.name.clone(), u))
            .collect();
        let sessions = store
            .sessions()?
            .into_iter()
            .filter(|s| s.expires_at > now)
            .map(|s| (s.token_sha256.clone(), s))
            .collect();
        Ok(Self {
            register,
            users: RwLock::new(users),
            sessions: RwLock::new(sessions),
            setups: Mutex::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
            by_user: Limiter::new(config.login_failures, config.login_window),
            by_addr: Limiter::new(config.login_failures.saturating_mul(4), config.login_window),
            ttl: time::Duration::try_from(config.session_ttl).unwrap_or(time::Duration::HOUR),
            secure: config.secure_cookies,
        })
    }

    /// With no user at all: a one-time token for creating the first admin.
    pub fn first_run_token(&self) -> Option<String> {
        if !self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            return None;
        }
        Some(self.grant(None))
    }

    fn grant(&self, user: Option<String>) -> String {
        let token = random_token();
        self.setups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                sha256_hex(&token),
                Setup {
                    user,
                    expires: OffsetDateTime::now_utc() + SETUP_TTL,
                },
            );
        token
    }

    fn setup_grant(&self, token: &str) -> Option<Setup> {
        let setups = self.setups.lock().unwrap_or_else(|p| p.into_inner());
        setups
            .get(&sha256_hex(token))
            .filter(|s| s.expires > OffsetDateTime::now_utc())
            .cloned()
    }

    pub fn users(&self) -> Vec<User> {
        let mut users: Vec<User> = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    /// The logged-in user of this request, if any.
    pub fn viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        let token = cookie(headers, SESSION_COOKIE)?;
        let session = self
            .sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sha256_hex(&token))
            .cloned()?;
        if session.expires_at <= OffsetDateTime::now_utc() {
            return None;
        }
        let user = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&session.user)
            .cloned()?;
        (!user.disabled).then_some(Viewer { user, session })
    }

    async fn write(&self, records: WebRecords) -> Result<(), Failure> {
        self.register
            .ask(|reply| Job::Records {
                set: Box::new(records),
                reply,
            })
            .await?;
        Ok(())
    }

    async fn put_user(&self, user: User, drop_sessions: bool) -> Result<(), Failure> {
        let dropped: Vec<String> = if drop_sessions {
            self.sessions
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|s| s.user == user.name)
                .map(|s| s.token_sha256.clone())
                .collect()
        } else {
            Vec::new()
        };
        self.write(WebRecords {
            users: vec![user.clone()],
            sessions: dropped.iter().map(|k| (k.clone(), None)).collect(),
            ..Default::default()
        })
        .await?;
        {
            let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
            for key in &dropped {
                sessions.remove(key);
            }
        }
        self.users
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.name.clone(), user);
        Ok(())
    }

    /// Adds a user. Without a password, returns a one-time setup link token for them.
    pub async fn add_user(
        &self,
        name: &str,
        role: Role,
        password: Option<String>,
    ) -> Result<Option<String>, Failure> {
        check_name(name)?;
        if let Some(p) = &password {
            check_password_rules(p)?;
        }
        let _one = self.writes.lock().await;
        if self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
        {
            return Err(Failure::new(
                Kind::Conflict,
                format!("user {name} exists already"),
            ));
        }
        let password_hash = match &password {
            Some(p) => hash_password(p.clone()).await?,
            None => String::new(),
        };
        let user = User {
            name: name.to_owned(),
            role,
            password_hash,
            disabled: false,
            created_at: OffsetDateTime::now_utc(),
        };
        self.put_user(user, false).await?;
        // The first user made: the first-run link has done its job.
        self.setups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| s.user.is_some());
        Ok(password
            .is_none()
            .then(|| self.grant(Some(name.to_owned()))))
    }

    pub async fn set_password(&self, name: &str, password: String) -> Result<(), Failure> {
        check_password_rules(&password)?;
        let _one = self.writes.lock().await;
        let mut user = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| Failure::not_found(format!("user {name}")))?;
        user.password_hash = hash_password(password).await?;
        // A new password ends the user's other sessions.
        self.put_user(user, true).await
    }

    pub async fn disable(&self, name: &str) -> Result<(), Failure> {
        let _one = self.writes.lock().await;
        let mut user = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| Failure::not_found(format!("user {name}")))?;
        user.disabled = true;
        self.put_user(user, true).await
    }

    /// A new session for `user`: returns the cookie's token.
    async fn start_session(&self, user: &str) -> Result<String, Failure> {
        let token = random_token();
        let now = OffsetDateTime::now_utc();
        let session = Session {
            token_sha256: sha256_hex(&token),
            user: user.to_owned(),
            csrf: random_token(),
            created_at: now,
            expires_at: now + self.ttl,
        };
        // Expired sessions go out with the new one.
        let expired: Vec<String> = self
            .sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| s.expires_at <= now)
            .map(|s| s.token_sha256.clone())
            .collect();
        let mut sessions: Vec<(String, Option<Session>)> =
            expired.iter().map(|k| (k.clone(), None)).collect();
        sessions.push((session.token_sha256.clone(), Some(session.clone())));
        self.write(WebRecords {
            sessions,
            ..Default::default()
        })
        .await?;
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        for key in expired {
            map.remove(&key);
        }
        map.insert(session.token_sha256.clone(), session);
        Ok(token)
    }

    async fn end_session(&self, token_sha256: &str) -> Result<(), Failure> {
        self.write(WebRecords {
            sessions: vec![(token_sha256.to_owned(), None)],
            ..Default::default()
        })
        .await?;
        self.sessions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token_sha256);
        Ok(())
    }

    pub fn session_cookie(&self, token: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .expect("cookie is ASCII")
    }

    /// The Origin check and the form token, for every POST.
    pub fn check_post(
        &self,
        headers: &HeaderMap,
        viewer: Option<&Viewer>,
        token: &str,
    ) -> Result<(), PageError> {
        check_origin(headers)?;
        let expected = match viewer {
            Some(v) => Some(v.session.csrf.clone()),
            None => cookie(headers, FORM_COOKIE),
        };
        match expected {
            Some(expected)
                if !token.is_empty()
                    && crate::secret::same(token.as_bytes(), expected.as_bytes()) =>
            {
                Ok(())
            }
            _ => Err(PageError::forbidden(
                "The form's security token is missing or wrong. Reload the page and try again.",
            )),
        }
    }
}

/// A present `Origin` (or, without it, `Referer`) must be this host.
pub fn check_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let claimed = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let authority = claimed
        .strip_prefix("http://")
        .or_else(|| claimed.strip_prefix("https://"))
        .map(|rest| rest.split('/').next().unwrap_or_default());
    if authority.is_some_and(|a| !host.is_empty() && a.eq_ignore_ascii_case(host)) {
        Ok(())
    } else {
        Err(PageError::forbidden(
            "Cross-site form submissions are refused.",
        ))
    }
}

/// The form token before login (double-submit cookie): the request's, or a new one to set.
pub fn form_token(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, FORM_COOKIE).filter(|t| t.len() == 64) {
        Some(token) => (token, None),
        None => {
            let token = random_token();
            let value = HeaderValue::from_str(&format!(
                "{FORM_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            ))
            .expect("cookie is ASCII");
            (token, Some(value))
        }
    }
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    csrf: String,
    next: String,
    username: String,
    error: String,
}

#[derive(Deserialize)]
pub struct NextParam {
    next: Option<String>,
}

fn safe_next(next: Option<String>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .unwrap_or_else(|| "/".to_owned())
}

pub async fn login_form(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<NextParam>,
) -> Response {
    let next = safe_next(params.next);
    if state.web.auth.viewer(&headers).is_some() {
        return Redirect::to(&next).into_response();
    }
    let (csrf, set) = form_token(&headers);
    let page = LoginPage {
        nav: Nav::anonymous(&state.web),
        csrf,
        next,
        username: String::new(),
        error: String::new(),
    };
    with_cookie(render(&page), set)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub async fn login(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(super::pages::form_rejected)?;
    let auth = &state.web.auth;
    auth.check_post(&headers, None, &form.csrf)?;
    let next = safe_next(form.next);
    let name = form.username.trim().to_owned();
    let addr = peer.ip().to_string();
    let refuse = |status: StatusCode, error: String| {
        let page = LoginPage {
            nav: Nav::anonymous(&state.web),
            csrf: form.csrf.clone(),
            next: next.clone(),
            username: name.clone(),
            error,
        };
        let mut response = render(&page);
        *response.status_mut() = status;
        response
    };
    if let Some(wait) = auth
        .by_user
        .blocked(&name.to_lowercase())
        .max(auth.by_addr.blocked(&addr))
    {
        tracing::warn!(user = %name, %addr, "Dashboard login throttled after repeated failures");
        return Ok(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed logins. Try again in {} minutes.",
                wait.as_secs().div_ceil(60).max(1)
            ),
        ));
    }
    let user = auth
        .users
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&name)
        .cloned();
    let hash = user
        .as_ref()
        .filter(|u| !u.disabled && !u.password_hash.is_empty())
        .map(|u| u.password_hash.clone());
    if !verify_password(form.password, hash).await {
        auth.by_user.hit(&name.to_lowercase());
        auth.by_addr.hit(&addr);
        tracing::info!(user = %name, %addr, "Dashboard login failed");
        return Ok(refuse(
            StatusCode::UNAUTHORIZED,
            "Wrong user name or password.".to_owned(),
        ));
    }
    auth.by_user.clear(&name.to_lowercase());
    let token = auth.start_session(&name).await?;
    tracing::info!(user = %name, %addr, "Dashboard login");
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        auth.session_cookie(&token, auth.ttl.whole_seconds()),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<ApiState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(super::pages::form_rejected)?;
    let auth = &state.web.auth;
    let viewer = auth.viewer(&headers);
    auth.check_post(&headers, viewer.as_ref(), &form.csrf)?;
    if let Some(viewer) = viewer {
        auth.end_session(&viewer.session.token_sha256).await?;
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, auth.session_cookie("", 0));
    Ok(response)
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    nav: Nav,
    csrf: String,
    token: String,
    /// Empty: the first admin, who picks a name.
    user: String,
    error: String,
}

#[derive(Deserialize)]
pub struct SetupParams {
    #[serde(default)]
    token: String,
}

pub async fn setup_form(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<SetupParams>,
) -> Result<Response, PageError> {
    let grant = state
        .web
        .auth
        .setup_grant(&params.token)
        .ok_or_else(|| PageError::not_found("This setup link is unknown, used or expired."))?;
    let (csrf, set) = form_token(&headers);
    let page = SetupPage {
        nav: Nav::anonymous(&state.web),
        csrf,
        token: params.token,
        user: grant.user.unwrap_or_default(),
        error: String::new(),
    };
    Ok(with_cookie(render(&page), set))
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn setup(
    State(state): State<ApiState>,
    headers: HeaderMap,
    form: Result<Form<SetupForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(super::pages::form_rejected)?;
    let auth = &state.web.auth;
    auth.check_post(&headers, None, &form.csrf)?;
    let grant = auth
        .setup_grant(&form.token)
        .ok_or_else(|| PageError::not_found("This setup link is unknown, used or expired."))?;
    let result = match &grant.user {
        None => auth
            .add_user(form.username.trim(), Role::Admin, Some(form.password))
            .await
            .map(|_| form.username.trim().to_owned()),
        Some(name) => auth
            .set_password(name, form.password)
            .await
            .map(|()| name.clone()),
    };
    let name = match result {
        Ok(name) => name,
        Err(failure) if failure.kind == Kind::Invalid || failure.kind == Kind::Conflict => {
            let page = SetupPage {
                nav: Nav::anonymous(&state.web),
                csrf: form.csrf,
                token: form.token,
                user: grant.user.unwrap_or_default(),
                error: failure.message,
            };
            let mut response = render(&page);
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(response);
        }
        Err(failure) => return Err(failure.into()),
    };
    auth.setups
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&sha256_hex(&form.token));
    let token = auth.start_session(&name).await?;
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        auth.session_cookie(&token, auth.ttl.whole_seconds()),
    );
    Ok(response)
}

// ---- The users API (`/api/v1/users`), for `caretaker-collector user ...`.

fn user_json(user: &User) -> Value {
    json!({"name": user.name, "role": user.role.name(), "disabled": user.disabled,
           "has_password": !user.password_hash.is_empty(),
           "created_at": user.created_at.format(&time::format_description::well_known::Rfc3339).ok()})
}

pub async fn api_list(State(state): State<ApiState>) -> Json<Value> {
    Json(Value::Array(
        state.web.auth.users().iter().map(user_json).collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    name: String,
    role: String,
    password: Option<String>,
}

pub async fn api_add(
    State(state): State<ApiState>,
    body: Result<Json<AddBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Failure> {
    let Json(body) = body.map_err(|r| crate::http::rejected(r.status(), r.body_text()))?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        Failure::invalid(format!(
            "role {:?} is not admin, technician or read-only",
            body.role
        ))
    })?;
    let token = state
        .web
        .auth
        .add_user(&body.name, role, body.password)
        .await?;
    let link = token.map(|t| {
        let base = state.web.base_url.clone().unwrap_or_default();
        format!("{base}/setup?token={t}")
    });
    Ok(Json(
        json!({"name": body.name, "role": role.name(), "setup_link": link}),
    ))
}

pub async fn api_disable(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Failure> {
    state.web.auth.disable(&name).await?;
    Ok(Json(json!({"name": name, "disabled": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    password: String,
}

pub async fn api_password(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<PasswordBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Failure> {
    let Json(body) = body.map_err(|r| crate::http::rejected(r.status(), r.body_text()))?;
    state.web.auth.set_password(&name, body.password).await?;
    Ok(Json(json!({"name": name, "password_set": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        map
    }

    #[test]
    fn the_limiter_blocks_after_its_allowance_per_key_only() {
        let limiter = Limiter::new(2, Duration::from_secs(60));
        limiter.hit("10.0.0.1");
        assert!(limiter.blocked("10.0.0.1").is_none());
        limiter.hit("10.0.0.1");
        assert!(limiter.blocked("10.0.0.1").is_some());
        assert!(
            limiter.blocked("10.0.0.2").is_none(),
            "others are not affected"
        );
        limiter.clear("10.0.0.1");
        assert!(limiter.blocked("10.0.0.1").is_none());
    }

    #[test]
    fn a_foreign_origin_or_referer_is_refused_and_a_missing_one_is_left_to_the_token() {
        let host = ("host", "caretaker:8080");
        assert!(check_origin(&headers(&[host, ("origin", "http://caretaker:8080")])).is_ok());
        assert!(check_origin(&headers(&[host, ("origin", "https://caretaker:8080")])).is_ok());
        assert!(check_origin(&headers(&[host, ("origin", "http://evil.example")])).is_err());
        assert!(check_origin(&headers(&[host, ("origin", "null")])).is_err());
        assert!(check_origin(&headers(&[host, ("referer", "http://evil.example/x")])).is_err());
        assert!(
            check_origin(&headers(&[
                host,
                ("referer", "http://caretaker:8080/incidents")
            ]))
            .is_ok()
        );
        assert!(check_origin(&headers(&[host])).is_ok());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = headers(&[("cookie", "a=1; caretaker_session=abc; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, FORM_COOKIE), None);
    }

    #[test]
    fn passwords_hash_and_verify_and_unknown_users_never_match() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let hash = hash_password("a long password".to_owned())
                .await
                .expect("hash");
            assert!(hash.starts_with("$argon2id$"), "{hash}");
            assert!(verify_password("a long password".to_owned(), Some(hash.clone())).await);
            assert!(!verify_password("wrong".to_owned(), Some(hash)).await);
            assert!(!verify_password("anything".to_owned(), None).await);
        });
        assert!(check_password_rules("short").is_err());
        assert!(check_name("tech.one").is_ok());
        assert!(check_name("<script>").is_err());
    }
}
