; BPF object for tests/pmd/test_af_xdp.py, written by hand as the LLVM IR clang -O2 -g -target bpf
; would emit for a 6-instruction XDP program that redirects to an XSKMAP named xsks_map.
; Regenerate the .o (needs llc, package llvm): llc -march=bpfel -filetype=obj -O2 xsk_maps.ll -o xsk_maps.o
target datalayout = "e-m:e-p:64:64-i64:64-i128:128-n32:64-S128"
target triple = "bpf"

%struct.bpf_map_def = type { i32, i32, i32, i32, i32 }
%struct.xdp_md = type { i32, i32, i32, i32, i32, i32 }

@xsks_map = dso_local global %struct.bpf_map_def { i32 17, i32 4, i32 4, i32 64, i32 0 }, section "maps", align 4
@_license = dso_local global [4 x i8] c"GPL\00", section "license", align 1
@llvm.compiler.used = appending global [2 x i8*] [i8* bitcast (%struct.bpf_map_def* @xsks_map to i8*), i8* getelementptr inbounds ([4 x i8], [4 x i8]* @_license, i32 0, i32 0)], section "llvm.metadata"

define dso_local i32 @xdp_sock_prog(%struct.xdp_md* nocapture readonly %ctx) section "xdp_sock" {
entry:
  %q = getelementptr inbounds %struct.xdp_md, %struct.xdp_md* %ctx, i64 0, i32 4
  %idx = load i32, i32* %q, align 4
  %f = inttoptr i64 51 to i64 (i8*, i32, i64)*
  %r = call i64 %f(i8* bitcast (%struct.bpf_map_def* @xsks_map to i8*), i32 %idx, i64 2)
  %ret = trunc i64 %r to i32
  ret i32 %ret
}
