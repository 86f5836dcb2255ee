//! Every label of the console in Simplified Chinese and in English, from one table, and the
//! platform's enums with the meanings its documentation gives them (PROTOCOL.md, section 3).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// `?lang=` first, then the `lang` cookie, then `Accept-Language` (the first of zh or en named);
    /// Chinese when nothing says otherwise, as the platform's operators read it.
    pub fn choose(query: Option<&str>, cookie: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(lang) = query.or(cookie).and_then(Lang::parse) {
            return lang;
        }
        let accepted = accept_language.unwrap_or_default().split(',').filter_map(|part| {
            let tag = part.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            Lang::parse(tag.split('-').next().unwrap_or_default())
        });
        accepted.into_iter().next().unwrap_or(Lang::Zh)
    }

    fn parse(text: &str) -> Option<Lang> {
        match text {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The language to switch to.
    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    pub fn html_lang(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn t(self, label: Label) -> &'static str {
        let (zh, en) = label.texts();
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// Every fixed text of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Console,
    SignIn,
    SignOut,
    AdminToken,
    WrongToken,
    TooManyAttempts,
    Jobs,
    Account,
    Job,
    Calls,
    Answered,
    AnswerRate,
    IntentGrades,
    FirstCall,
    LastCall,
    CompletionReceived,
    Reconciliation,
    Listed,
    Backfilled,
    Missing,
    Deliveries,
    State,
    NoJobs,
    Switch,
    NotYet,
    Target,
    Pending,
    Dead,
    OldestDue,
    LastError,
    ReplayDead,
    Since,
    ConfirmReplay,
    Replayed,
    NoTargets,
    Phone,
    Result,
    Grade,
    Start,
    Duration,
    Filter,
    NextPage,
    Transcript,
    Robot,
    Person,
    Reveal,
    Audio,
    Properties,
    Any,
    NoCalls,
}

impl Label {
    fn texts(self) -> (&'static str, &'static str) {
        match self {
            Label::Console => ("探意中继控制台", "tanyi-relay console"),
            Label::SignIn => ("登录", "Sign in"),
            Label::SignOut => ("退出", "Sign out"),
            Label::AdminToken => ("管理令牌", "Admin token"),
            Label::WrongToken => ("令牌不正确", "Wrong token"),
            Label::TooManyAttempts => ("失败次数过多，请稍后再试", "Too many failed attempts; try again later"),
            Label::Jobs => ("任务", "Jobs"),
            Label::Account => ("账户", "Account"),
            Label::Job => ("任务 ID", "Job id"),
            Label::Calls => ("通话", "Calls"),
            Label::Answered => ("已接听", "Answered"),
            Label::AnswerRate => ("接通率", "Answer rate"),
            Label::IntentGrades => ("意向等级", "Intent grades"),
            Label::FirstCall => ("首次通话", "First call"),
            Label::LastCall => ("最后通话", "Last call"),
            Label::CompletionReceived => ("任务完成回调", "Completion received"),
            Label::Reconciliation => ("对账", "Reconciliation"),
            Label::Listed => ("平台列出", "listed"),
            Label::Backfilled => ("已补齐", "backfilled"),
            Label::Missing => ("仍缺失", "still missing"),
            Label::Deliveries => ("下游投递", "Deliveries"),
            Label::State => ("完整性", "Completeness"),
            Label::NoJobs => ("还没有任务", "No jobs yet"),
            Label::Switch => ("English", "中文"),
            Label::NotYet => ("尚无", "not yet"),
            Label::Target => ("下游目标", "Target"),
            Label::Pending => ("待投递", "Pending"),
            Label::Dead => ("投递失败", "Dead"),
            Label::OldestDue => ("最久等待", "Oldest due"),
            Label::LastError => ("最近错误", "Last error"),
            Label::ReplayDead => ("重新投递失败的", "Replay dead deliveries"),
            Label::Since => ("自（可选）", "since (optional)"),
            Label::ConfirmReplay => ("确认重新投递", "Confirm the replay"),
            Label::Replayed => ("已重新排队", "Queued again"),
            Label::NoTargets => ("没有配置下游目标", "No targets configured"),
            Label::Phone => ("号码", "Number"),
            Label::Result => ("通话结果", "Result"),
            Label::Grade => ("意向", "Intent"),
            Label::Start => ("开始时间", "Started"),
            Label::Duration => ("时长（秒）", "Duration (s)"),
            Label::Filter => ("筛选", "Filter"),
            Label::NextPage => ("下一页", "Next page"),
            Label::Transcript => ("对话记录", "Transcript"),
            Label::Robot => ("机器人", "Robot"),
            Label::Person => ("客户", "Customer"),
            Label::Reveal => ("显示完整号码（将记录）", "Show the full number (logged)"),
            Label::Audio => ("录音", "Recording"),
            Label::Properties => ("客户属性", "Properties"),
            Label::Any => ("全部", "any"),
            Label::NoCalls => ("没有符合条件的通话", "No calls match"),
        }
    }
}

/// The intent grades A–F: what each means (built-in tag group 0).
pub fn intent_grade(lang: Lang, grade: char) -> &'static str {
    let (zh, en) = match grade {
        'A' => ("A 较强", "A strong"),
        'B' => ("B 一般", "B average"),
        'C' => ("C 不确定", "C undetermined"),
        'D' => ("D 较弱", "D weak"),
        'E' => ("E 需再次跟进", "E needs follow-up"),
        'F' => ("F 无需再次跟进", "F no follow-up needed"),
        _ => ("其他", "other"),
    };
    if lang == Lang::Zh {
        zh
    } else {
        en
    }
}

/// The platform's call results (`resultStatus`); an unknown one is shown as it came.
pub const RESULT_STATUSES: [&str; 10] = [
    "ANSWERED",
    "NO_ANSWER",
    "BUSY",
    "POWER_OFF",
    "OUT_OF_SERVICE",
    "REFUSED",
    "VACANT_NUMBER",
    "CAN_NOT_CONNECT",
    "FROM_PHONE_ERROR",
    "SYSTEM_ERROR",
];

pub fn result_status(lang: Lang, status: &str) -> String {
    let (zh, en) = match status {
        "ANSWERED" => ("已接听", "answered"),
        "NO_ANSWER" => ("呼叫号码未接听", "not answered"),
        "BUSY" => ("忙线", "busy"),
        "POWER_OFF" => ("关机", "powered off"),
        "OUT_OF_SERVICE" => ("停机", "out of service"),
        "REFUSED" => ("拒接", "refused"),
        "VACANT_NUMBER" => ("空号", "vacant number"),
        "CAN_NOT_CONNECT" => ("无法接通", "cannot connect"),
        "FROM_PHONE_ERROR" => ("主叫号码不可用", "caller line unusable"),
        "SYSTEM_ERROR" => ("外呼失败", "dial failed"),
        other => return other.to_owned(),
    };
    if lang == Lang::Zh { zh } else { en }.to_owned()
}

/// A job's completeness state.
pub fn job_state(lang: Lang, state: crate::completeness::JobState) -> &'static str {
    use crate::completeness::JobState;
    let (zh, en) = match state {
        JobState::Complete => ("完整", "complete"),
        JobState::Incomplete => ("不完整", "incomplete"),
        JobState::Unknown => ("未知（无接口凭据）", "unknown (no API credentials)"),
    };
    if lang == Lang::Zh {
        zh
    } else {
        en
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_comes_from_the_query_the_cookie_or_the_browser_in_that_order() {
        assert_eq!(Lang::choose(None, None, None), Lang::Zh);
        assert_eq!(Lang::choose(None, None, Some("en-US,en;q=0.9,zh;q=0.5")), Lang::En);
        assert_eq!(Lang::choose(None, None, Some("fr-FR, zh-CN;q=0.8")), Lang::Zh);
        assert_eq!(Lang::choose(None, Some("en"), Some("zh-CN")), Lang::En);
        assert_eq!(Lang::choose(Some("zh"), Some("en"), Some("en")), Lang::Zh);
        assert_eq!(Lang::choose(Some("xx"), None, Some("en")), Lang::En);
    }

    #[test]
    fn every_label_has_both_languages() {
        for lang in [Lang::Zh, Lang::En] {
            assert!(!lang.t(Label::SignIn).is_empty());
            for grade in ['A', 'B', 'C', 'D', 'E', 'F'] {
                assert!(intent_grade(lang, grade).starts_with(grade));
            }
        }
    }
}
