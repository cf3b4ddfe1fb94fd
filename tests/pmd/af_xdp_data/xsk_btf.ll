; BPF object for tests/pmd/test_af_xdp.py, written by hand as the LLVM IR clang -O2 -g -target bpf
; would emit for a 6-instruction XDP program that redirects to an XSKMAP named xsks_map.
; Regenerate the .o (needs llc, package llvm): llc -march=bpfel -filetype=obj -O2 xsk_btf.ll -o xsk_btf.o
target datalayout = "e-m:e-p:64:64-i64:64-i128:128-n32:64-S128"
target triple = "bpf"

%struct.anon = type { [17 x i32]*, [64 x i32]*, i32*, i32* }
%struct.xdp_md = type { i32, i32, i32, i32, i32, i32 }

@xsks_map = dso_local global %struct.anon zeroinitializer, section ".maps", align 8, !dbg !0
@_license = dso_local global [4 x i8] c"GPL\00", section "license", align 1
@llvm.compiler.used = appending global [2 x i8*] [i8* bitcast (%struct.anon* @xsks_map to i8*), i8* getelementptr inbounds ([4 x i8], [4 x i8]* @_license, i32 0, i32 0)], section "llvm.metadata"

define dso_local i32 @xdp_sock_prog(%struct.xdp_md* nocapture readonly %ctx) section "xdp" !dbg !50 {
entry:
  %q = getelementptr inbounds %struct.xdp_md, %struct.xdp_md* %ctx, i64 0, i32 4
  %idx = load i32, i32* %q, align 4
  %f = inttoptr i64 51 to i64 (i8*, i32, i64)*
  %r = call i64 %f(i8* bitcast (%struct.anon* @xsks_map to i8*), i32 %idx, i64 2)
  %ret = trunc i64 %r to i32
  ret i32 %ret
}

!llvm.dbg.cu = !{!2}
!llvm.module.flags = !{!30, !31, !32}
!0 = !DIGlobalVariableExpression(var: !1, expr: !DIExpression())
!1 = distinct !DIGlobalVariable(name: "xsks_map", scope: !2, file: !3, line: 3, type: !10, isLocal: false, isDefinition: true)
!2 = distinct !DICompileUnit(language: DW_LANG_C99, file: !3, producer: "hand", isOptimized: true, runtimeVersion: 0, emissionKind: FullDebug, globals: !4)
!3 = !DIFile(filename: "xsk.c", directory: "/tmp")
!4 = !{!0}
!10 = distinct !DICompositeType(tag: DW_TAG_structure_type, file: !3, line: 3, size: 256, elements: !11)
!11 = !{!12, !17, !21, !25}
!12 = !DIDerivedType(tag: DW_TAG_member, name: "type", scope: !10, file: !3, line: 4, baseType: !13, size: 64)
!13 = !DIDerivedType(tag: DW_TAG_pointer_type, baseType: !14, size: 64)
!14 = !DICompositeType(tag: DW_TAG_array_type, baseType: !15, size: 544, elements: !16)
!15 = !DIBasicType(name: "int", size: 32, encoding: DW_ATE_signed)
!16 = !{!40}
!40 = !DISubrange(count: 17)
!17 = !DIDerivedType(tag: DW_TAG_member, name: "max_entries", scope: !10, file: !3, line: 5, baseType: !18, size: 64, offset: 64)
!18 = !DIDerivedType(tag: DW_TAG_pointer_type, baseType: !19, size: 64)
!19 = !DICompositeType(tag: DW_TAG_array_type, baseType: !15, size: 2048, elements: !20)
!20 = !{!41}
!41 = !DISubrange(count: 64)
!21 = !DIDerivedType(tag: DW_TAG_member, name: "key", scope: !10, file: !3, line: 6, baseType: !22, size: 64, offset: 128)
!22 = !DIDerivedType(tag: DW_TAG_pointer_type, baseType: !23, size: 64)
!23 = !DIDerivedType(tag: DW_TAG_typedef, name: "__u32", file: !3, line: 1, baseType: !24)
!24 = !DIBasicType(name: "unsigned int", size: 32, encoding: DW_ATE_unsigned)
!25 = !DIDerivedType(tag: DW_TAG_member, name: "value", scope: !10, file: !3, line: 7, baseType: !22, size: 64, offset: 192)
!30 = !{i32 7, !"Dwarf Version", i32 5}
!31 = !{i32 2, !"Debug Info Version", i32 3}
!32 = !{i32 1, !"wchar_size", i32 4}
!50 = distinct !DISubprogram(name: "xdp_sock_prog", scope: !3, file: !3, line: 10, type: !51, scopeLine: 10, flags: DIFlagPrototyped, spFlags: DISPFlagDefinition | DISPFlagOptimized, unit: !2, retainedNodes: !55)
!51 = !DISubroutineType(types: !52)
!52 = !{!15, !53}
!53 = !DIDerivedType(tag: DW_TAG_pointer_type, baseType: !54, size: 64)
!54 = !DICompositeType(tag: DW_TAG_structure_type, name: "xdp_md", file: !3, line: 2, size: 192, flags: DIFlagFwdDecl)
!55 = !{}
