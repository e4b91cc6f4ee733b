// The application's fields: labels, units, choices and the API's validation rules
// (services/gateway/fastloans_gateway/schemas.py), checked here before anything is sent.

export const EMPLOYMENT = [
  ["employed", "Employed"],
  ["self-employed", "Self-employed"],
  ["unemployed", "Unemployed"],
  ["retired", "Retired"],
  ["student", "Student"],
];

export const PURPOSES = [
  ["business", "Business"],
  ["education", "Education"],
  ["debt_consolidation", "Debt consolidation"],
  ["home_improvement", "Home improvement"],
  ["auto", "Auto"],
  ["medical", "Medical"],
  ["personal", "Personal"],
  ["other", "Other"],
];

export const STATUSES = [
  ["pending", "Pending"],
  ["approved", "Approved"],
  ["rejected", "Rejected"],
  ["referred", "Referred"],
];

const NAME_MAX = 200;
const SCORE_MIN = 300;
const SCORE_MAX = 850;
const MONEY_MAX_WHOLE_DIGITS = 12; // 999,999,999,999.99

/** A label for a stored choice value ("debt_consolidation" → "Debt consolidation"). */
export function choiceLabel(choices, value) {
  const found = choices.find(([v]) => v === value);
  return found ? found[1] : value;
}

function applicantName(raw) {
  const value = raw.trim();
  if (!value) return { error: "Enter the applicant's full name." };
  if ([...value].length > NAME_MAX) return { error: `Use at most ${NAME_MAX} characters.` };
  return { value };
}

function creditScore(raw) {
  const text = raw.trim();
  if (!text) return { error: "Enter the credit score." };
  if (!/^\d+$/.test(text)) return { error: `Enter a whole number from ${SCORE_MIN} to ${SCORE_MAX}.` };
  const value = Number(text);
  if (value < SCORE_MIN || value > SCORE_MAX) return { error: `Enter a whole number from ${SCORE_MIN} to ${SCORE_MAX}.` };
  return { value };
}

function moneyRule({ allowZero, what }) {
  return (raw) => {
    const text = raw.trim().replace(/[,\s]/g, "");
    if (!text) return { error: `Enter the ${what}${allowZero ? " (0 if none)" : ""}.` };
    const match = /^(\d*)(?:\.(\d*))?$/.exec(text);
    if (!match || (match[1] === "" && !match[2])) return { error: "Enter an amount in numbers, like 2500.00." };
    const whole = match[1].replace(/^0+(?=\d)/, "") || "0";
    const fraction = match[2] || "";
    if (fraction.length > 2) return { error: "Use at most two decimal places." };
    if (whole.length > MONEY_MAX_WHOLE_DIGITS) return { error: "Enter at most 999,999,999,999.99." };
    const isZero = /^0*$/.test(whole) && /^0*$/.test(fraction);
    if (isZero && !allowZero) return { error: "Enter an amount greater than 0." };
    return { value: `${whole}.${fraction.padEnd(2, "0")}` };
  };
}

function choice(choices, what) {
  return (raw) => (choices.some(([v]) => v === raw) ? { value: raw } : { error: `Choose the ${what}.` });
}

/** Every field of an application, in form order. */
export const FIELDS = [
  { name: "applicant_name", label: "Applicant's full name", hint: "As on their ID, up to 200 characters.",
    input: { type: "text", autocomplete: "name", spellcheck: "false" }, check: applicantName },
  { name: "credit_score", label: "Credit score", hint: "Points, a whole number from 300 to 850.",
    input: { type: "text", inputmode: "numeric", autocomplete: "off" }, check: creditScore, width: "short" },
  { name: "loan_amount", label: "Loan amount", unit: "in the loan's currency", hint: "Up to two decimal places, e.g. 2000.00.",
    input: { type: "text", inputmode: "decimal", autocomplete: "off" }, check: moneyRule({ allowZero: false, what: "loan amount" }), width: "medium" },
  { name: "loan_purpose", label: "Purpose of the loan", choices: PURPOSES, check: choice(PURPOSES, "purpose of the loan") },
  { name: "monthly_income", label: "Monthly income", unit: "per month", hint: "All income per month, e.g. 5000.00.",
    input: { type: "text", inputmode: "decimal", autocomplete: "off" }, check: moneyRule({ allowZero: false, what: "monthly income" }), width: "medium" },
  { name: "monthly_debt", label: "Monthly debt payments", unit: "per month", hint: "Loan, card and other debt payments per month; 0 if none.",
    input: { type: "text", inputmode: "decimal", autocomplete: "off" }, check: moneyRule({ allowZero: true, what: "monthly debt payments" }), width: "medium" },
  { name: "employment_status", label: "Employment status", choices: EMPLOYMENT, check: choice(EMPLOYMENT, "employment status") },
];
