//! The calls of a made-up campaign, one generator for the mock platform (what its API lists) and
//! the simulator (what it pushes), so that both tell one story: about a third of the calls
//! answered, transcripts of 0 to 40 turns, intent levels weighted towards C–F, custom properties.
//! Each call depends only on the seed, its job and its index.

use serde_json::{json, Value};

use super::rng::Rng;

const RESULTS: [(&str, u64); 7] = [
    ("ANSWERED", 34),
    ("NO_ANSWER", 28),
    ("BUSY", 12),
    ("POWER_OFF", 10),
    ("REFUSED", 8),
    ("VACANT_NUMBER", 5),
    ("CAN_NOT_CONNECT", 3),
];
const INTENTS: [(&str, u64); 6] = [("A", 5), ("B", 10), ("C", 20), ("D", 22), ("E", 18), ("F", 25)];
const ROBOT: [&str; 4] = [
    "您好，我是楼盘顾问小智，打扰您一分钟。",
    "我们在江北新开了一个精装楼盘，均价一万七。",
    "离地铁站步行五分钟。",
    "可以加您微信发一份资料吗？",
];
const PERSON: [&str; 4] = ["嗯，你说。", "价格有点高。", "位置在哪里？", "好的，发过来吧。"];
const CONCERNS: [&str; 4] = ["价格", "位置", "户型", "交房时间"];

/// Call `index` (from 0) of a job.
pub fn call_record_id(robot_call_job_id: i64, index: u32) -> i64 {
    robot_call_job_id * 1_000_000 + i64::from(index)
}

/// The job and index of a call id made by `call_record_id`.
pub fn job_and_index(call_record_id: i64) -> (i64, i64) {
    (call_record_id.div_euclid(1_000_000), call_record_id.rem_euclid(1_000_000))
}

fn rng_for(seed: u64, call_record_id: i64, purpose: u64) -> Rng {
    Rng::new(seed ^ (call_record_id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ purpose)
}

/// The `data` of a ROBOT_CALL_RECORD callback (also what the platform's API lists for the call).
pub fn call_record(seed: u64, robot_call_job_id: i64, index: u32) -> Value {
    let id = call_record_id(robot_call_job_id, index);
    let mut rng = rng_for(seed, id, 0);
    let result = rng.weighted(&RESULTS);
    let answered = result == "ANSWERED";
    let turns = if answered { rng.below(41) as usize } else { 0 };
    let transcript: Vec<Value> = (0..turns)
        .map(|i| {
            let (speaker, lines) = if i % 2 == 0 { ("ROBOT", &ROBOT) } else { ("PERSON", &PERSON) };
            json!({"callDetailId": i + 1, "type": speaker, "text": lines[(i / 2) % lines.len()]})
        })
        .collect();
    let minute = rng.below(600);
    let duration = if answered { 5 + turns as u64 * 4 } else { 0 };
    let tier = ["普通", "银卡", "金卡"][rng.below(3) as usize];
    let concerns: Vec<&str> =
        if answered { CONCERNS.iter().copied().filter(|_| rng.below(3) == 0).collect() } else { Vec::new() };
    json!({
        "callRecordId": id,
        "tenantId": 1,
        "robotCallJobId": robot_call_job_id,
        "dialogFlowId": 12,
        "calledPhoneNumber": format!("1{:010}", rng.below(10_000_000_000)),
        "resultStatus": result,
        "intentLevel": if answered { rng.weighted(&INTENTS) } else { "F" },
        "customerConcern": concerns,
        "fullAudioUrl": if answered { json!(format!("https://audio.example.com/{robot_call_job_id}/{index}.wav")) } else { Value::Null },
        "customerAudioUrl": Value::Null,
        "analysisBasis": if answered { "客户有兴趣" } else { "未接通" },
        "startTime": format!("2024-03-01 {:02}:{:02}:00", 9 + minute / 60, minute % 60),
        "endTime": format!("2024-03-01 {:02}:{:02}:{:02}", 9 + minute / 60, minute % 60, duration.min(59)),
        "chatDuration": duration,
        "chatRound": turns,
        "attributes": if answered && rng.below(2) == 0 { json!(["有意向"]) } else { json!([]) },
        "properties": {"客户等级": tier, "来源": "模拟"},
        "callDetailList": transcript,
    })
}

/// The ROBOT_CALL_SMS callback that follows a call, for about one answered call in four.
pub fn sms_request(seed: u64, call: &Value) -> Option<Value> {
    let id = call["callRecordId"].as_i64()?;
    if call["resultStatus"] != "ANSWERED" || rng_for(seed, id, 0x5eed).below(4) != 0 {
        return None;
    }
    Some(json!({"dataType": "ROBOT_CALL_SMS", "data": {
        "tenantId": 1, "companyName": "模拟公司", "customerPersonName": "客户", "phoneNumber": call["calledPhoneNumber"],
        "callRecordId": id, "robotCallRobotId": call["robotCallJobId"], "robotCallRobotName": "模拟任务",
        "msgList": [{"smsTemplateId": 152, "smsTemplateName": "welcome", "smsSignatureId": 109,
            "smsSignatureName": "模拟", "type": "NOTICE", "text": "${姓名} 您好", "msg": "【模拟】客户 您好", "varMap": {"姓名": "客户"}}]}}))
}
