;; A Sluice WebAssembly transform in WebAssembly text: keeps the records whose value is longer
;; than `min_length` bytes. Sluice compiles this file when the pipeline starts; the ABI (what
;; sluice_alloc, sluice_configure and sluice_transform receive and return) is in docs/plugins.md.
(module
  (import "sluice" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $min (mut i32) (i32.const 10))
  (global $out (mut i32) (i32.const 0))
  (global $outCap (mut i32) (i32.const 0))
  (data (i32.const 16) "min_length set")

  ;; Bump allocation, 8-byte aligned, growing the memory when needed; 0 when it cannot.
  (func $alloc (export "sluice_alloc") (param $size i32) (result i32)
    (local $at i32) (local $end i32) (local $have i32)
    (local.set $at (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $at) (local.get $size)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535)) (i32.const 16)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $at))

  ;; The configuration arrives as JSON ({"min_length":N}); this module reads its first number.
  (func (export "sluice_configure") (param $at i32) (param $len i32) (result i32)
    (local $i i32) (local $c i32) (local $n i32) (local $seen i32)
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.load8_u (i32.add (local.get $at) (local.get $i))))
        (if (i32.and (i32.ge_u (local.get $c) (i32.const 48)) (i32.le_u (local.get $c) (i32.const 57)))
          (then
            (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48))))
            (local.set $seen (i32.const 1)))
          (else (br_if $done (local.get $seen))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (global.set $min (local.get $n))
    (call $log (i32.const 0) (i32.const 16) (i32.const 14))
    (i32.const 0))

  ;; One call per batch: a "keep" entry (op 0, record index) for each record long enough.
  (func (export "sluice_transform") (param $in i32) (param $len i32) (result i32)
    (local $n i32) (local $i i32) (local $d i32) (local $p i32) (local $kept i32) (local $need i32)
    (local.set $n (i32.load (local.get $in)))
    (local.set $need (i32.add (i32.const 8) (i32.shl (local.get $n) (i32.const 3))))
    (if (i32.lt_u (global.get $outCap) (local.get $need))
      (then
        (global.set $out (call $alloc (local.get $need)))
        (if (i32.eqz (global.get $out)) (then (return (i32.const 0))))
        (global.set $outCap (local.get $need))))
    (local.set $p (i32.add (global.get $out) (i32.const 8)))
    (local.set $d (i32.add (local.get $in) (i32.const 8)))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        ;; the value's length is at +12 in the record's descriptor (-1 when null)
        (if (i32.gt_s (i32.load offset=12 (local.get $d)) (global.get $min))
          (then
            (i32.store (local.get $p) (i32.const 0))
            (i32.store offset=4 (local.get $p) (local.get $i))
            (local.set $p (i32.add (local.get $p) (i32.const 8)))
            (local.set $kept (i32.add (local.get $kept) (i32.const 1)))))
        (local.set $d (i32.add (local.get $d) (i32.const 48)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (i32.store (global.get $out) (i32.sub (local.get $p) (global.get $out)))
    (i32.store offset=4 (global.get $out) (local.get $kept))
    (global.get $out))
)
