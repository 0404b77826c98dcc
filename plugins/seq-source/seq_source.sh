#!/bin/sh
# seq-source: a Sluice process source in POSIX sh. The configure line carries the fields as
# JSON; sed picks the two integers out of it (a real plugin would use jq or a JSON library).
read -r configure
count=$(printf '%s' "$configure" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
size=$(printf '%s' "$configure" | sed -n 's/.*"batch":\([0-9]*\).*/\1/p')
printf '{"type":"ready"}\n'
n=0
id=0
while [ "$n" -lt "$count" ]; do
  id=$((id + 1))
  records=""
  i=0
  while [ "$i" -lt "$size" ] && [ "$n" -lt "$count" ]; do
    n=$((n + 1)); i=$((i + 1))
    [ -n "$records" ] && records="$records,"
    records="$records{\"key\":\"$n\",\"value\":\"{\\\"n\\\":$n}\"}"
  done
  printf '{"type":"batch","id":%d,"records":[%s]}\n' "$id" "$records"
  read -r ack || exit 0
done
printf '{"type":"end"}\n'
