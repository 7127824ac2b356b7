//! Realistic AI events for `aiaudit bench --content ai` and the wire-size
//! figures in docs/performance.md: prompts and answers in natural language
//! composed from a fixed corpus of sentence frames and fillers (so that
//! sentences rarely repeat whole, as real traffic's do not), with varied
//! ids, users, sessions, models, token counts and times. Deterministic for
//! a seed, so a measurement can be repeated.

use serde_json::{json, Value};

/// Sentence frames of what users ask; `{}` slots take fillers in order.
const ASKS: [&str; 24] = [
    "Can you check whether the loan application from {name} in {city} meets our policy for {product}?",
    "Please summarise the last three messages from {name} about the delayed {product} payment.",
    "What is the risk score for a customer in {city} who earns {amount} naira a month and asks for {product}?",
    "Draft a polite reply to {name} explaining why the {product} request needs another document.",
    "Translate this complaint from {name} into English and tell me what they want: the {product} was charged twice.",
    "Is it safe to approve {amount} naira for {name}, whose account in {city} was opened {days} days ago?",
    "Find the clause in the {product} terms that covers early repayment and explain it simply.",
    "A farmer near {city} asks when to plant maize if the rains start {days} days late. What should we advise?",
    "The patient reports fever for {days} days after travelling to {city}. Which questions should the nurse ask next?",
    "List the documents {name} still has to upload before the {product} can be disbursed.",
    "Classify this ticket from {name}: the mobile app logs them out every time they open {product}.",
    "Explain to {name}, in plain words, why the transfer of {amount} naira to {city} was held for review.",
    "Does the conversation with {name} contain any personal data we must not store, such as a BVN or card number?",
    "Recommend the next best action for {name}, a small trader in {city} who missed {days} repayments on {product}.",
    "Check the identity photo of {name} against the selfie and say whether a human should review it.",
    "Write a short SMS in Pidgin reminding {name} that the {product} instalment of {amount} naira is due.",
    "Which of our branches near {city} can open a {product} account for a customer without a utility bill?",
    "Summarise the call transcript: {name} wants to increase the limit on {product} to {amount} naira.",
    "Is this message from {name} a phishing attempt? It asks for the OTP to unlock {product}.",
    "Calculate the monthly instalment for {amount} naira over {days} months at the {product} rate.",
    "The student {name} in {city} asks for help with quadratic equations before an exam in {days} days.",
    "Give three reasons the {product} claim from {name} could be fraudulent, with the evidence for each.",
    "What should the agent tell {name} if the network in {city} is down and the {product} payment failed?",
    "Rewrite the {product} fee schedule so that a customer in {city} can read it on a small phone screen.",
];

/// Sentence frames of answers.
const ANSWERS: [&str; 32] = [
    "Based on the documents provided, {name} meets the income requirement for {product}.",
    "The declared monthly income of {amount} naira is consistent with the last three bank statements.",
    "However, the account in {city} is only {days} days old, which is below the ninety-day threshold in our policy.",
    "I recommend approving the request subject to a manual review by an underwriter.",
    "I recommend declining the request and inviting the customer to apply again in {days} days.",
    "The customer was charged twice on the same day; the second charge of {amount} naira should be reversed.",
    "No personal data such as a BVN, card number or home address appears in the conversation.",
    "The message contains a phone number and a partial card number, which must be redacted before storage.",
    "The early repayment clause allows {name} to repay the {product} at any time without a penalty after the first {days} months.",
    "A short reply could read: thank you for your patience, we have received your documents and will respond within two working days.",
    "The risk score is moderate, mainly because of {days} late payments in the past year.",
    "The identity photo and the selfie appear to show the same person, but the lighting is poor, so a human should confirm.",
    "Farmers near {city} are usually advised to wait for two weeks of steady rain before planting maize.",
    "The nurse should ask about vomiting, confusion, difficulty breathing and whether a malaria test was done.",
    "If any danger sign is present, the patient should be referred to the nearest health facility at once.",
    "The ticket is a login problem in the mobile app, not a payment problem, so it goes to the technical support queue.",
    "The transfer was held because it was larger than the customer's usual transfers and went to a new recipient in {city}.",
    "The remaining documents are a valid means of identification, a recent passport photograph and proof of address.",
    "The monthly instalment for {amount} naira over {days} months is about {amount2} naira at the current rate.",
    "This message is very likely a phishing attempt: we never ask customers for a one-time password.",
    "The branch in {city} can open the account with a letter from a community leader instead of a utility bill.",
    "The claim has three warning signs: the receipt date, the repeated device and the mismatch in the amount of {amount} naira.",
    "Each of these needs evidence from the transaction log before any decision is taken against {name}.",
    "If the network is down, the agent should record the payment reference and promise a call back within an hour.",
    "Here is a simpler version of the fee schedule, with each fee on its own line and amounts rounded to the nearest naira.",
    "To solve a quadratic equation, first write it as a x squared plus b x plus c equals zero, then use the formula.",
    "I cannot find enough information to answer confidently, so I have escalated the case to a human agent.",
    "The limit can be raised to {amount} naira once the customer has made {days} consecutive repayments on time.",
    "The SMS reads: hello {name}, your {product} payment of {amount} naira go due tomorrow, abeg pay on time.",
    "In summary, the customer is satisfied with the resolution and no further action is needed.",
    "The model's confidence in this answer is low, and the policy requires a human review for amounts above {amount} naira.",
    "The next best action is to offer {name} a restructured plan with smaller instalments over {days} months.",
];

const NAMES: [&str; 24] = [
    "Adaeze Okafor",
    "Chinedu Eze",
    "Fatima Bello",
    "Tunde Adebayo",
    "Ngozi Nwosu",
    "Ibrahim Musa",
    "Amaka Obi",
    "Emeka Uche",
    "Zainab Abubakar",
    "Segun Ogunleye",
    "Halima Sani",
    "Kelechi Nnamdi",
    "Wanjiru Kamau",
    "Otieno Odhiambo",
    "Thandiwe Dlamini",
    "Sipho Nkosi",
    "Kwame Mensah",
    "Ama Owusu",
    "Abebe Tesfaye",
    "Aisha Mohammed",
    "Yusuf Lawal",
    "Chiamaka Ibe",
    "Bola Adeyemi",
    "Musa Garba",
];
const CITIES: [&str; 16] = [
    "Lagos",
    "Abuja",
    "Kano",
    "Ibadan",
    "Port Harcourt",
    "Enugu",
    "Kaduna",
    "Benin City",
    "Jos",
    "Nairobi",
    "Mombasa",
    "Accra",
    "Kumasi",
    "Johannesburg",
    "Durban",
    "Addis Ababa",
];
const PRODUCTS: [&str; 12] = [
    "personal loan",
    "salary advance",
    "savings account",
    "micro-insurance policy",
    "merchant wallet",
    "school fees loan",
    "asset finance plan",
    "farm input loan",
    "health cover",
    "debit card",
    "mobile money transfer",
    "overdraft",
];
const MODELS: [&str; 6] = [
    "claude-sonnet-4-5",
    "gpt-4.1-mini",
    "gemini-2.5-flash",
    "llama-3.3-70b",
    "mistral-small-3",
    "qwen3-32b",
];
const PROVIDERS: [&str; 6] = [
    "anthropic",
    "openai",
    "gcp.gemini",
    "meta",
    "mistral_ai",
    "alibaba",
];
const ACTIONS: [&str; 4] = [
    "model.invoke",
    "model.invoke",
    "agent.decision",
    "tool.call",
];

/// A small deterministic generator (xorshift64*): varied, repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }
}

/// A frame with its slots filled; the same name, city and product within
/// one sentence, as a person would write it.
fn fill(frame: &str, rng: &mut Rng, name: &str, product: &str) -> String {
    let city = rng.pick(&CITIES);
    let amount = format!("{}", (1 + rng.below(500)) * 1_000);
    let amount2 = format!("{}", (1 + rng.below(90)) * 1_250);
    let days = format!("{}", 2 + rng.below(58));
    frame
        .replace("{name}", name)
        .replace("{city}", city)
        .replace("{product}", product)
        .replace("{amount2}", &amount2)
        .replace("{amount}", &amount)
        .replace("{days}", &days)
}

/// One AI event of about `size` bytes of JSON: a prompt of one or two
/// sentences and an answer of sentences added until the event reaches the
/// size.
pub fn ai_event(rng: &mut Rng, id: &str, time: &str, size: usize) -> Value {
    let name = rng.pick(&NAMES);
    let product = rng.pick(&PRODUCTS);
    let m = rng.below(MODELS.len());
    let mut prompt = fill(rng.pick(&ASKS), rng, name, product);
    if rng.below(3) == 0 {
        prompt.push(' ');
        prompt.push_str(&fill(rng.pick(&ASKS), rng, name, product));
    }
    let input_tokens = 40 + rng.below(900);
    let channel = ["whatsapp", "ussd", "web", "android"][rng.below(4)];
    let mut event = json!({
        "id": id,
        "time": time,
        "tenant": "bench",
        "source": {"name": "loan-assistant", "version": format!("2.{}.{}", rng.below(9), rng.below(30))},
        "actor": {"id": format!("user-{}", rng.hex(8)), "type": "user"},
        "action": rng.pick(&ACTIONS),
        "trace_id": rng.hex(32),
        "ai": {
            "gen_ai.provider.name": PROVIDERS[m],
            "gen_ai.request.model": MODELS[m],
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": 20 + rng.below(600),
            "gen_ai.request.temperature": (rng.below(11) as f64) / 10.0,
        },
        "input": {"content": prompt},
        "output": {"content": ""},
        "outcome": {"status": if rng.below(20) == 0 { "failure" } else { "success" }},
        "attributes": {
            "channel": channel,
            "latency_ms": 150 + rng.below(4000),
            "request_id": format!("req_{}", rng.hex(20)),
            "session_id": format!("sess-{}", rng.hex(12)),
        },
    });
    let base = serde_json::to_vec(&event).map(|v| v.len()).unwrap_or(0);
    let mut answer = String::new();
    while base + answer.len() < size {
        if !answer.is_empty() {
            answer.push(' ');
        }
        answer.push_str(&fill(rng.pick(&ANSWERS), rng, name, product));
    }
    // Cut at a word near the size, so events stay close to it.
    let room = size.saturating_sub(base).max(40);
    if answer.len() > room {
        let cut = answer[..room].rfind(' ').unwrap_or(room);
        answer.truncate(cut);
        answer.push('.');
    }
    event["output"]["content"] = json!(answer);
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_near_the_size_valid_and_varied() {
        let mut rng = Rng::new(7);
        let events: Vec<Value> = (0..100)
            .map(|i| {
                ai_event(
                    &mut rng,
                    &format!("id-{i}"),
                    "2026-12-03T10:00:00.000Z",
                    1100,
                )
            })
            .collect();
        let mut answers = std::collections::HashSet::new();
        for e in &events {
            let len = serde_json::to_vec(e).unwrap().len();
            assert!((900..=1300).contains(&len), "{len}");
            aiaudit_event::validate(e.as_object().unwrap()).unwrap();
            answers.insert(e["output"]["content"].as_str().unwrap().to_string());
        }
        // No two answers alike.
        assert_eq!(answers.len(), 100);
        // The same seed, the same events.
        let mut again = Rng::new(7);
        let first = ai_event(&mut again, "id-0", "2026-12-03T10:00:00.000Z", 1100);
        assert_eq!(first, events[0]);
    }
}
