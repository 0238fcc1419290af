#!/usr/bin/env bash
# The layer rules of docs/ARCHITECTURE.md, checked against the graph cmake/UpgLayers.cmake declares
# (read from <build>/upg_layers.tsv, which CMake writes from those upg_layer() calls):
#  * every folder of src/ is a layer;
#  * a file in src/<layer>/ includes ("<other>/...") only headers of its own layer and of the layers
#    its upg_layer() call names in DEPS;
#  * no layer's archive (libupg_<layer>.a, when built) uses a symbol defined in a layer it does not
#    link (its DEPS, transitively): what a declaration without an include would hide;
#  * the check itself catches a bad include (a scratch tree with one);
#  * docs/ARCHITECTURE.md's table gives each layer the same DEPS, in the same order.
# Usage: test_layering.sh path/to/upg [path/to/upg_layers.tsv]   (default: upg_layers.tsv beside upg)
set -uo pipefail
GRAPH="${2:-$(dirname "$1")/upg_layers.tsv}"
cd "$(dirname "$0")/../.."
[ -f "$GRAPH" ] || { echo "FAIL: $GRAPH not found (written by CMake from cmake/UpgLayers.cmake)"; exit 1; }
. "$(dirname "$0")/lib.sh"  # $T, pass, fail, summary

# check_includes SRC_ROOT: prints one line per violation (nothing when the tree keeps the rules).
check_includes() {
  local root="$1"
  {
    # Folders (and stray files) directly under src/.
    for e in "$root"/*; do echo "ENTRY	${e#"$root"/}	$([ -d "$e" ] && echo dir || echo file)"; done
    # Every quoted include with a folder: FILE:LINE:TEXT.
    grep -rnE --include='*.h' --include='*.hpp' --include='*.cpp' --include='*.cu' --include='*.cuh' \
      --include='*.inc' '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"/]+/' "$root" |
      sed "s|^$root/||; s|^|INCLUDE	|"
  } | awk -F'\t' -v graph="$GRAPH" '
    BEGIN {
      while ((getline line < graph) > 0) {
        split(line, f, "\t"); layer[f[1]] = 1; n = split(f[2], d, " ")
        for (i = 1; i <= n; i++) allowed[f[1], d[i]] = 1
      }
    }
    $1 == "ENTRY" {
      if ($3 != "dir") print "src/" $2 ": a file outside every layer folder"
      else if (!($2 in layer)) print "src/" $2 "/: not a layer (declare it with upg_layer() in cmake/UpgLayers.cmake)"
      next
    }
    $1 == "INCLUDE" {
      rest = substr($0, 9); split(rest, p, ":"); file = p[1]; lineno = p[2]
      text = substr(rest, length(file) + length(lineno) + 3)
      from = file; sub(/\/.*/, "", from)
      to = text; sub(/^[^"]*"/, "", to); sub(/\/.*/, "", to)
      if (!(from in layer) || !(to in layer) || from == to) next
      if (!((from, to) in allowed))
        print "src/" file ":" lineno ": layer " from " includes " to " (" text "), not among its DEPS in cmake/UpgLayers.cmake"
      else used[from, to] = 1
    }
    END {
      # Declared but unused edges are allowed; say so (a note, not a failure).
      for (k in allowed) if (!(k in used)) { split(k, e, SUBSEP); printf "note: layer %s declares DEPS %s but includes none of its headers\n", e[1], e[2] > "/dev/stderr" }
    }'
}

# 1. The tree.
check_includes src > "$T/violations" || echo "the include check itself failed" >> "$T/violations"
if [ -s "$T/violations" ]; then fail "include rules broken:"; sed 's/^/  /' "$T/violations"; else pass; fi

# 2. The check catches a violation: a scratch copy of src/ with a lower layer including an upper one.
mkdir -p "$T/src" && cp -r src/. "$T/src/"
printf '#include "runtime/model.h"\n' >> "$T/src/base/error.h"
check_includes "$T/src" 2>/dev/null > "$T/bad"
if grep -q '^src/base/error.h:.*layer base includes runtime' "$T/bad"; then pass; else fail "a bad include (base -> runtime) was not reported"; fi
mkdir "$T/src/nolayer"
check_includes "$T/src" 2>/dev/null > "$T/bad"
if grep -q '^src/nolayer/: not a layer' "$T/bad"; then pass; else fail "a folder outside the graph was not reported"; fi

# 3. docs/ARCHITECTURE.md's table lists the same layers with the same DEPS ("uses" column).
awk -F'|' -v graph="$GRAPH" '
  BEGIN { while ((getline line < graph) > 0) { split(line, f, "\t"); want[f[1]] = f[2] } }
  /^\| [a-z]+ \| `src\// {
    name = $2; gsub(/ /, "", name); uses = $4; gsub(/\([^)]*\)/, "", uses); gsub(/[ -]/, "", uses)
    seen[name] = 1; n = split(uses, u, ","); m = split(want[name], w, " ")
    got = ""; for (i = 1; i <= n; i++) got = got " " u[i]
    expect = ""; for (i = 1; i <= m; i++) expect = expect " " w[i]
    if (!(name in want)) print "docs/ARCHITECTURE.md: layer " name " is not in the graph"
    else if (got != expect) print "docs/ARCHITECTURE.md: layer " name " uses" got ", the graph says" expect
  }
  END { for (l in want) if (!(l in seen)) print "docs/ARCHITECTURE.md: no row for layer " l }' docs/ARCHITECTURE.md \
  > "$T/doc_violations" || echo "awk failed" >> "$T/doc_violations"
if [ -s "$T/doc_violations" ]; then fail "the table does not match cmake/UpgLayers.cmake:"; sed 's/^/  /' "$T/doc_violations"; else pass; fi

# 4. Symbols: each archive's undefined symbols, defined (strongly) in another layer's archive, must
# come from a layer it links. Skipped for archives not built.
missing=0
while IFS=$'\t' read -r name archive; do
  if [ -f "$archive" ]; then
    nm -g -P "$archive" 2>/dev/null | awk -v L="$name" 'NF >= 2 && length($2) == 1 { print L "\t" $1 "\t" $2 }'
  else
    missing=$((missing + 1))
  fi
done < <(awk -F'\t' -v OFS='\t' '{ print $1, $4 }' "$GRAPH") > "$T/symbols"
if [ "$missing" -gt 0 ]; then
  echo "note: $missing layer archive(s) not built: their symbols are not checked"
fi
awk -F'\t' -v graph="$GRAPH" '
  function reaches(a, b,    i, n, d) {  # a links b (directly or through its DEPS)
    if ((a, b) in memo) return memo[a, b]
    memo[a, b] = 0; n = split(deps[a], d, " ")
    for (i = 1; i <= n; i++) if (d[i] == b || reaches(d[i], b)) { memo[a, b] = 1; break }
    return memo[a, b]
  }
  BEGIN { while ((getline line < graph) > 0) { split(line, f, "\t"); deps[f[1]] = f[2] } }
  $3 == "U" { undef[$1, $2] = 1; next }
  { own[$1, $2] = 1; if ($3 ~ /[TDBRi]/) strong[$2] = strong[$2] " " $1 }
  END {
    for (k in undef) {
      split(k, e, SUBSEP); L = e[1]; s = e[2]
      if ((L, s) in own || !(s in strong)) continue
      n = split(strong[s], m, " ")
      for (i = 1; i <= n; i++)
        if (m[i] != L && !reaches(L, m[i])) print "libupg_" L ".a uses " s ", defined in layer " m[i] ", which it does not link"
    }
  }' "$T/symbols" | sort | c++filt > "$T/symbol_violations" || echo "the symbol check itself failed" >> "$T/symbol_violations"
if [ -s "$T/symbol_violations" ]; then fail "symbol rules broken:"; sed 's/^/  /' "$T/symbol_violations"; else pass; fi

summary
