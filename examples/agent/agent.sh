#!/bin/sh
# Stockade's example agent: one model call, one file in the workspace, result and usage.
#
# It reads its task (the Agent's spec.task, mounted at $STOCKADE_TASK_FILE), sends it to
# an OpenAI-compatible chat completions API (POST <baseURL>/chat/completions, JSON) with
# the key in $OPENAI_API_KEY (set it from a Secret with env.valueFrom.secretKeyRef),
# writes the model's answer to <workspace>/<outputFile>, and reports through the
# termination message (/dev/termination-log), which Stockade copies into the Agent's
# status:
#
#   {"result": "<the answer>", "usage": {"inputTokens": N, "outputTokens": N, "costUSD": X}}
#
# (tokens from the response's usage.prompt_tokens / completion_tokens; costUSD only when
# the config gives prices). An answer too long for the 4 KiB message is replaced in
# `result` by a note naming the file. Exit codes: 0 done (Succeeded), 1 the call or its
# answer failed, 2 bad input (no task, no key); both non-zero codes end the attempt with
# reason Error, retried up to spec.backoffLimit.
#
# Config (spec.config, one file per key in $STOCKADE_CONFIG_DIR; all optional):
#   model                      the model name (default gpt-4o-mini)
#   baseURL                    the API's base URL (default $OPENAI_BASE_URL, else
#                              https://api.openai.com/v1)
#   systemPrompt               the system message
#   outputFile                 the file written in the workspace (default answer.md)
#   usdPerMillionInputTokens   prices, to report usage.costUSD
#   usdPerMillionOutputTokens
#
# Tools: POSIX sh, awk, sed, tr, and curl (HTTPS with certificate checks; the Dockerfile
# installs it) or, without curl, busybox wget for plain HTTP only (busybox's TLS does not
# verify certificates, so this script refuses HTTPS without curl). The JSON handling is
# deliberately small: it takes the first "content" string of the response
# (choices[0].message.content of a non-streaming completion) and copies it, still
# JSON-escaped, into the termination message. It is an example of the contract, not an
# agent framework: replace the call with your agent CLI.
set -eu

task_file="${STOCKADE_TASK_FILE:-/etc/stockade/task}"
config_dir="${STOCKADE_CONFIG_DIR:-/etc/stockade/config}"
# Two overrides for running the script outside a pod (its unit tests do); Stockade sets
# neither.
workspace="${EXAMPLE_AGENT_WORKSPACE:-/workspace}"
termination_log="${EXAMPLE_AGENT_TERMINATION_LOG:-/dev/termination-log}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/agent.XXXXXX")"
trap 'rm -rf "${tmp}"' EXIT

cfg() {  # cfg KEY DEFAULT: the config value of KEY, else DEFAULT
  if [ -r "${config_dir}/$1" ]; then cat "${config_dir}/$1"; else printf '%s' "$2"; fi
}

json_string() {  # json_string < TEXT: TEXT as a JSON string literal
  awk 'BEGIN { ORS = ""; print "\"" }
    { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); gsub(/\r/, "\\r")
      gsub(/[\001-\037]/, " "); if (NR > 1) print "\\n"; print }
    END { print "\"" }'
}

finish() {  # finish EXIT_CODE RESULT_JSON [USAGE_JSON]: report, then exit
  if [ -n "${3:-}" ]; then
    printf '{"result": %s, "usage": %s}\n' "$2" "$3" >"${termination_log}"
  else
    printf '{"result": %s}\n' "$2" >"${termination_log}"
  fi
  exit "$1"
}

fail() {  # fail EXIT_CODE MESSAGE: report MESSAGE on stderr and as the result
  echo "example agent: $2" >&2
  finish "$1" "$(printf '%s' "$2" | json_string)"
}

[ -s "${task_file}" ] || fail 2 "no task: set spec.task (mounted at ${task_file})"
[ -n "${OPENAI_API_KEY:-}" ] ||
  fail 2 "no API key: set env OPENAI_API_KEY from a Secret (valueFrom.secretKeyRef)"
model="$(cfg model gpt-4o-mini)"
base_url="$(cfg baseURL "${OPENAI_BASE_URL:-https://api.openai.com/v1}")"
system_prompt="$(cfg systemPrompt "You are a careful software agent. Answer the task concisely.")"
output_file="$(cfg outputFile answer.md)"
case "${output_file}" in
  */* | .* | "") fail 2 "outputFile must be a plain file name, got '${output_file}'" ;;
esac
url="${base_url%/}/chat/completions"

printf '{"model": %s, "messages": [{"role": "system", "content": %s}, {"role": "user", "content": %s}]}\n' \
  "$(printf '%s' "${model}" | json_string)" \
  "$(printf '%s' "${system_prompt}" | json_string)" \
  "$(json_string <"${task_file}")" >"${tmp}/request.json"

echo "example agent: asking ${model} at ${url}"
if command -v curl >/dev/null 2>&1; then
  # The key goes in a header file, not on the command line (other processes see that).
  (umask 077 && printf 'Authorization: Bearer %s\n' "${OPENAI_API_KEY}" >"${tmp}/auth")
  curl --silent --show-error --fail --proto '=https,http' --max-time 300 \
    --header @"${tmp}/auth" --header 'Content-Type: application/json' \
    --data-binary @"${tmp}/request.json" --output "${tmp}/response.json" "${url}" ||
    fail 1 "the model API call to ${url} failed (curl exit $?)"
else
  case "${url}" in
    http://*) ;;
    *) fail 2 "${url}: without curl only http:// is allowed (busybox wget does not verify TLS)" ;;
  esac
  # (No -T: Debian's busybox 1.35 wget crashes with it.)
  wget -q -O "${tmp}/response.json" \
    --header "Authorization: Bearer ${OPENAI_API_KEY}" \
    --header 'Content-Type: application/json' \
    --post-file "${tmp}/request.json" "${url}" ||
    fail 1 "the model API call to ${url} failed (wget exit $?)"
fi

# The answer as a JSON string literal: the first "content": "..." of the response.
answer="$(tr -d '\n' <"${tmp}/response.json" | awk '
  { doc = doc $0 }
  END {
    if (!match(doc, /"content"[ \t\r]*:[ \t\r]*"/)) exit 1
    rest = substr(doc, RSTART + RLENGTH)
    out = "\""; escaped = 0
    for (i = 1; i <= length(rest); i++) {
      c = substr(rest, i, 1); out = out c
      if (escaped) escaped = 0
      else if (c == "\\") escaped = 1
      else if (c == "\"") { print out; exit 0 }
    }
    exit 1
  }')" || fail 1 "the response has no message content: $(head -c 300 "${tmp}/response.json")"

number() {  # number KEY: the first integer value of "KEY" in the response, else 0
  tr -d '\n' <"${tmp}/response.json" |
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p" | grep . || echo 0
}
input_tokens="$(number prompt_tokens)"
output_tokens="$(number completion_tokens)"
usage="{\"inputTokens\": ${input_tokens}, \"outputTokens\": ${output_tokens}"
in_price="$(cfg usdPerMillionInputTokens "")"
out_price="$(cfg usdPerMillionOutputTokens "")"
if [ -n "${in_price}${out_price}" ]; then
  cost="$(awk -v i="${input_tokens}" -v o="${output_tokens}" -v pi="${in_price:-0}" \
    -v po="${out_price:-0}" 'BEGIN { printf "%.6f", (i * pi + o * po) / 1000000 }')"
  usage="${usage}, \"costUSD\": ${cost}"
fi
usage="${usage}}"

# The answer, unescaped (\n \t \r \" \\ \/ and \uXXXX as UTF-8), into the workspace.
[ -d "${workspace}" ] && [ -w "${workspace}" ] || workspace="${tmp}/out"
mkdir -p "${workspace}"
printf '%s' "${answer}" | awk '
  function utf8(code) {  # code (0-0xFFFF, not a surrogate) as UTF-8 bytes
    if (code < 128) return sprintf("%c", code)
    if (code < 2048) return sprintf("%c%c", 192 + int(code / 64), 128 + code % 64)
    return sprintf("%c%c%c", 224 + int(code / 4096), 128 + int(code / 64) % 64, 128 + code % 64)
  }
  BEGIN { ORS = ""; hex = "0123456789abcdef" }
  {
    s = substr($0, 2, length($0) - 2)
    for (i = 1; i <= length(s); i++) {
      c = substr(s, i, 1)
      if (c != "\\") { print c; continue }
      c = substr(s, ++i, 1)
      if (c == "n") print "\n"; else if (c == "t") print "\t"; else if (c == "r") print "\r"
      else if (c == "u") {
        code = 0
        for (j = 1; j <= 4; j++) code = code * 16 + index(hex, tolower(substr(s, i + j, 1))) - 1
        # A surrogate pair (a character beyond U+FFFF) stays escaped.
        if (code >= 55296 && code < 57344) print "\\u" substr(s, i + 1, 4); else print utf8(code)
        i += 4
      }
      else print c
    }
    print "\n"
  }' >"${workspace}/${output_file}"
echo "example agent: wrote ${workspace}/${output_file} ($(wc -c <"${workspace}/${output_file}") bytes)"

# The termination message holds 4 KiB: a long answer is named, not copied.
if [ "${#answer}" -gt 3500 ]; then
  answer="$(printf 'the answer (%s bytes) is in %s/%s' \
    "$(wc -c <"${workspace}/${output_file}")" "${workspace}" "${output_file}" | json_string)"
fi
finish 0 "${answer}" "${usage}"
