//! The console's pages, rendered on the server (maud escapes every value it is given).

use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::i18n::{intent_grade, job_state, result_status, Label, Lang, RESULT_STATUSES};
use crate::completeness::{JobCompleteness, JobState};
use crate::store::{CallListRow, JobSummary, StoredCall, StoredTurn};
use crate::telemetry::mask_phone;

/// Every page: the header with navigation, the language switch and (signed in) sign-out.
pub fn layout(lang: Lang, title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.html_lang()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t(Label::Console)) }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                header {
                    strong { (lang.t(Label::Console)) }
                    nav {
                        @if csrf.is_some() {
                            a href="/console/jobs" { (lang.t(Label::Jobs)) }
                            a href="/console/calls" { (lang.t(Label::Calls)) }
                            a href="/console/deliveries" { (lang.t(Label::Deliveries)) }
                        }
                        a href={ "?lang=" (lang.other().code()) } hreflang=(lang.other().html_lang()) {
                            (lang.t(Label::Switch))
                        }
                        @if let Some(csrf) = csrf {
                            form method="post" action="/console/logout" class="inline" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { (lang.t(Label::SignOut)) }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn login(lang: Lang, problem: Option<Label>) -> Markup {
    let body = html! {
        h1 { (lang.t(Label::SignIn)) }
        @if let Some(problem) = problem {
            p class="error" role="alert" { (lang.t(problem)) }
        }
        form method="post" action="/console/login" class="login" {
            label for="token" { (lang.t(Label::AdminToken)) }
            input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
            button type="submit" id="sign-in" { (lang.t(Label::SignIn)) }
        }
    };
    layout(lang, lang.t(Label::SignIn), None, body)
}

/// One account's jobs: what `report_job_summary` counts, and the job's completeness.
pub struct AccountJobs {
    pub account: String,
    pub jobs: Vec<(JobCompleteness, Option<JobSummary>)>,
}

pub fn jobs(lang: Lang, csrf: &str, accounts: &[AccountJobs]) -> Markup {
    let body = html! {
        h1 { (lang.t(Label::Jobs)) }
        @for account in accounts {
            section {
                h2 { (lang.t(Label::Account)) ": " (account.account) }
                @if account.jobs.is_empty() {
                    p { (lang.t(Label::NoJobs)) }
                } @else {
                    div class="scroll" {
                        table class="jobs" {
                            thead { tr {
                                th { (lang.t(Label::Job)) }
                                th { (lang.t(Label::Calls)) }
                                th { (lang.t(Label::Answered)) }
                                th { (lang.t(Label::AnswerRate)) }
                                th { (lang.t(Label::IntentGrades)) }
                                th { (lang.t(Label::FirstCall)) " / " (lang.t(Label::LastCall)) }
                                th { (lang.t(Label::CompletionReceived)) }
                                th { (lang.t(Label::Reconciliation)) }
                                th { (lang.t(Label::Deliveries)) }
                                th { (lang.t(Label::State)) }
                            } }
                            tbody {
                                @for (job, summary) in &account.jobs {
                                    (job_row(lang, job, summary.as_ref()))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(lang, lang.t(Label::Jobs), Some(csrf), body)
}

fn job_row(lang: Lang, job: &JobCompleteness, summary: Option<&JobSummary>) -> Markup {
    let delivered: i64 = job.targets.iter().map(|t| t.delivered).sum();
    let pending: i64 = job.targets.iter().map(|t| t.pending).sum();
    let dead: i64 = job.targets.iter().map(|t| t.dead).sum();
    let state_class = match job.state {
        JobState::Complete => "complete",
        JobState::Incomplete => "incomplete",
        JobState::Unknown => "unknown",
    };
    html! {
        tr data-job=(job.robot_call_job_id) {
            td { (job.robot_call_job_id) }
            td class="number" { (summary.map_or(0, |s| s.calls)) }
            td class="number" { (summary.map_or(0, |s| s.answered)) }
            td class="number" {
                @match summary.and_then(|s| s.answer_rate) {
                    Some(rate) => { (format!("{:.1}%", rate * 100.0)) }
                    None => { "–" }
                }
            }
            td { @if let Some(summary) = summary { (grade_bar(lang, summary)) } }
            td { (time(summary.and_then(|s| s.first_call_at))) " – " (time(summary.and_then(|s| s.last_call_at))) }
            td {
                @match job.completion_received_at {
                    Some(at) => { (time(Some(at))) }
                    None => { (lang.t(Label::NotYet)) }
                }
            }
            td class="reconciliation" {
                @match job.calls.reported {
                    Some(listed) => {
                        (lang.t(Label::Listed)) " " (listed) ", " (lang.t(Label::Backfilled)) " " (job.calls.backfilled)
                        ", " (lang.t(Label::Missing)) " " (job.calls.missing.unwrap_or(0))
                    }
                    None => { (lang.t(Label::NotYet)) }
                }
            }
            td { (delivered) " / " (pending) " / " (dead) }
            td class={ "state " (state_class) } { (job_state(lang, job.state)) }
        }
    }
}

/// The A–F mix as one stacked bar, drawn on the server (inline SVG), each part titled.
fn grade_bar(lang: Lang, summary: &JobSummary) -> Markup {
    const WIDTH: f64 = 120.0;
    const COLOURS: [&str; 6] = ["#1a7f37", "#4fa36a", "#b8a100", "#d97a00", "#c2410c", "#8a8a8a"];
    let grades = summary.grades();
    let total: i64 = grades.iter().sum();
    let mut x = 0.0;
    let mut parts = String::new();
    if total > 0 {
        for (i, (&count, grade)) in grades.iter().zip(['A', 'B', 'C', 'D', 'E', 'F']).enumerate() {
            if count == 0 {
                continue;
            }
            let width = WIDTH * count as f64 / total as f64;
            let title = maud::html! { (intent_grade(lang, grade)) ": " (count) }.into_string();
            parts.push_str(&format!(
                r#"<rect x="{x:.1}" y="0" width="{width:.1}" height="12" fill="{}"><title>{title}</title></rect>"#,
                COLOURS[i]
            ));
            x += width;
        }
    }
    let label = grades
        .iter()
        .zip(['A', 'B', 'C', 'D', 'E', 'F'])
        .map(|(count, grade)| format!("{grade} {count}"))
        .collect::<Vec<_>>()
        .join(" · ");
    html! {
        svg class="grades" width="120" height="12" viewBox="0 0 120 12" role="img" aria-label=(label) {
            (PreEscaped(parts))
        }
        span class="grade-counts" { (label) }
    }
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "–".to_owned(), |at| at.format("%Y-%m-%d %H:%M").to_string())
}

/// One webhook target's health, as the queue figures and its latest dead delivery show it.
pub struct TargetHealth {
    pub target: String,
    pub pending: i64,
    pub dead: i64,
    pub oldest_due_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

pub fn deliveries(lang: Lang, csrf: &str, targets: &[TargetHealth], replayed: Option<(&str, u64)>) -> Markup {
    let body = html! {
        h1 { (lang.t(Label::Deliveries)) }
        @if let Some((target, count)) = replayed {
            p class="notice" role="status" { (target) ": " (lang.t(Label::Replayed)) " " span id="replayed" { (count) } }
        }
        @if targets.is_empty() {
            p { (lang.t(Label::NoTargets)) }
        }
        @for target in targets {
            section class="target" data-target=(target.target) {
                h2 { (lang.t(Label::Target)) ": " (target.target) }
                dl {
                    dt { (lang.t(Label::Pending)) } dd class="pending" { (target.pending) }
                    dt { (lang.t(Label::Dead)) } dd class="dead" { (target.dead) }
                    dt { (lang.t(Label::OldestDue)) } dd { (time(target.oldest_due_at)) }
                    dt { (lang.t(Label::LastError)) } dd class="last-error" { (target.last_error.as_deref().unwrap_or("–")) }
                }
                @if target.dead > 0 {
                    form method="post" action={ "/console/deliveries/" (target.target) "/replay" } class="replay" {
                        input type="hidden" name="csrf" value=(csrf);
                        label { (lang.t(Label::Since)) " " input type="datetime-local" name="since"; }
                        label { input type="checkbox" name="confirm" value="yes" required; " " (lang.t(Label::ConfirmReplay)) }
                        button type="submit" { (lang.t(Label::ReplayDead)) }
                    }
                }
            }
        }
    };
    layout(lang, lang.t(Label::Deliveries), Some(csrf), body)
}

/// The calls list's filter, as the form gives it back.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct CallsForm {
    pub account: Option<String>,
    pub job: Option<String>,
    pub result: Option<String>,
    pub grade: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
    pub before: Option<i64>,
}

impl CallsForm {
    /// The query string of this filter with another page's start.
    pub fn with_before(&self, before: i64) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("account", &self.account),
            ("job", &self.job),
            ("result", &self.result),
            ("grade", &self.grade),
            ("from", &self.from),
            ("until", &self.until),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                query.append_pair(key, value);
            }
        }
        query.append_pair("before", &before.to_string());
        query.finish()
    }
}

pub fn calls(
    lang: Lang,
    csrf: &str,
    accounts: &[String],
    account: &str,
    form: &CallsForm,
    rows: &[CallListRow],
    next: Option<i64>,
) -> Markup {
    let selected = |value: &Option<String>, option: &str| value.as_deref() == Some(option);
    let body = html! {
        h1 { (lang.t(Label::Calls)) }
        form method="get" action="/console/calls" class="filter" {
            label { (lang.t(Label::Account)) " "
                select name="account" {
                    @for name in accounts { option value=(name) selected[name == account] { (name) } }
                }
            }
            label { (lang.t(Label::Job)) " " input name="job" inputmode="numeric" size="8" value=[form.job.as_deref()]; }
            label { (lang.t(Label::Result)) " "
                select name="result" {
                    option value="" { (lang.t(Label::Any)) }
                    @for status in RESULT_STATUSES {
                        option value=(status) selected[selected(&form.result, status)] { (result_status(lang, status)) }
                    }
                }
            }
            label { (lang.t(Label::Grade)) " "
                select name="grade" {
                    option value="" { (lang.t(Label::Any)) }
                    @for grade in ['A', 'B', 'C', 'D', 'E', 'F'] {
                        option value=(grade) selected[selected(&form.grade, &grade.to_string())] { (intent_grade(lang, grade)) }
                    }
                }
            }
            label { (lang.t(Label::Start)) " ≥ " input type="date" name="from" value=[form.from.as_deref()]; }
            label { " < " input type="date" name="until" value=[form.until.as_deref()]; }
            button type="submit" id="filter" { (lang.t(Label::Filter)) }
        }
        @if rows.is_empty() {
            p { (lang.t(Label::NoCalls)) }
        } @else {
            div class="scroll" {
                table class="calls" {
                    thead { tr {
                        th { "ID" } th { (lang.t(Label::Job)) } th { (lang.t(Label::Phone)) } th { (lang.t(Label::Result)) }
                        th { (lang.t(Label::Grade)) } th { (lang.t(Label::Start)) } th { (lang.t(Label::Duration)) }
                    } }
                    tbody {
                        @for row in rows {
                            tr data-call=(row.call_record_id) {
                                td { a href={ "/console/calls/" (account) "/" (row.call_record_id) } { (row.call_record_id) } }
                                td { (row.robot_call_job_id.map_or("–".to_owned(), |j| j.to_string())) }
                                td class="phone" { (row.called_phone_number.as_deref().map_or("–".to_owned(), mask_phone)) }
                                td { (row.result_status.as_deref().map_or("–".to_owned(), |s| result_status(lang, s))) }
                                td { (grade_text(lang, row.intent_grade.as_deref(), row.intent_level.as_deref())) }
                                td { (time(row.start_time)) }
                                td class="number" { (row.chat_duration.map_or("–".to_owned(), |d| d.to_string())) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = next {
                p { a id="next-page" href={ "/console/calls?" (form.with_before(next)) } { (lang.t(Label::NextPage)) } }
            }
        }
    };
    layout(lang, lang.t(Label::Calls), Some(csrf), body)
}

fn grade_text(lang: Lang, grade: Option<&str>, level: Option<&str>) -> String {
    match grade.and_then(|g| g.chars().next()) {
        Some(grade) => intent_grade(lang, grade).to_owned(),
        None => level.unwrap_or("–").to_owned(),
    }
}

/// One call: what the platform said about it, its transcript as a conversation, its recordings.
/// The number is masked unless `revealed` (a logged, CSRF-protected request).
pub fn call(lang: Lang, csrf: &str, call: &StoredCall, turns: &[StoredTurn], revealed: bool) -> Markup {
    let number = call.called_phone_number.as_deref();
    let shown = match (number, revealed) {
        (Some(number), true) => number.to_owned(),
        (Some(number), false) => mask_phone(number),
        (None, _) => "–".to_owned(),
    };
    let body = html! {
        h1 { (lang.t(Label::Calls)) " " (call.call_record_id) }
        dl {
            dt { (lang.t(Label::Job)) } dd { (call.robot_call_job_id.map_or("–".to_owned(), |j| j.to_string())) }
            dt { (lang.t(Label::Phone)) } dd id="phone" { (shown) }
            dt { (lang.t(Label::Result)) } dd { (call.result_status.as_deref().map_or("–".to_owned(), |s| result_status(lang, s))) }
            dt { (lang.t(Label::Grade)) } dd { (grade_text(lang, call.intent_grade.as_deref(), call.intent_level.as_deref())) }
            dt { (lang.t(Label::Start)) } dd { (time(call.start_time)) }
            dt { (lang.t(Label::Duration)) } dd { (call.chat_duration.map_or("–".to_owned(), |d| d.to_string())) }
            dt { (lang.t(Label::Properties)) } dd { code { (call.properties.0.to_string()) } }
            dt { (lang.t(Label::Audio)) } dd {
                @for url in [call.full_audio_url.as_deref(), call.customer_audio_url.as_deref()].into_iter().flatten() {
                    @if url.starts_with("https://") || url.starts_with("http://") {
                        a href=(url) rel="noreferrer" { (lang.t(Label::Audio)) } " "
                    }
                }
            }
        }
        @if number.is_some() && !revealed {
            form method="post" action={ "/console/calls/" (call.account) "/" (call.call_record_id) "/reveal" } {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" id="reveal" { (lang.t(Label::Reveal)) }
            }
        }
        h2 { (lang.t(Label::Transcript)) }
        ol class="transcript" {
            @for turn in turns {
                @let person = turn.speaker.as_deref() == Some("PERSON");
                li class={ "turn " (if person { "person" } else { "robot" }) } {
                    span class="speaker" { (lang.t(if person { Label::Person } else { Label::Robot })) }
                    p { (turn.text.as_deref().unwrap_or("")) }
                }
            }
        }
    };
    layout(lang, lang.t(Label::Calls), Some(csrf), body)
}
