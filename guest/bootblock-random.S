# x86 boot sector guest, random-access variant of bootblock.S (same boot code: BSP
# enters 32-bit protected mode and wakes the AP with INIT-SIPI-SIPI through the 0x8000
# trampoline; start-up markers 'A' and 'C' on COM1 as there).
#
# Instead of walking its half page by page, each vCPU loops forever incrementing the first
# byte of one pseudo-random 4 KiB page of its half, the page chosen by a 32-bit LCG:
#
#   x = x * 1103515245 + 12345   (mod 2^32; stepped before each access)
#   page = (x >> 8) mod pages-in-half
#   incb (half_start + page * 4096)
#
# BSP (vCPU0): half [1 MiB, 120 MiB) = 30464 pages, seed x = 1, 'B' every 2^20 accesses.
# AP  (vCPU1): half [120 MiB, 240 MiB) = 30720 pages, seed x = 2, 'D' every 2^20 accesses.
# The native 'bootblock-random' vCPU pattern (native/src/vcpu_workers.cc) makes the same
# accesses; guest/README.md states the walk.
#
# Build: as --32 -o bootblock-random.o bootblock-random.S
#        ld -m elf_i386 -Ttext=0x7c00 -e start --oformat=binary -o bootblock-random.bin bootblock-random.o
        .set MARKER_MASK, 0xfffff   # a marker every 2^20 accesses (about 0.7 s under TCG here)
        .code16
        .text
        .globl start
start:
        cli
        xor %ax,%ax
        mov %ax,%ds
        lgdtl gdtdesc
        mov %cr0,%eax
        or $1,%eax
        mov %eax,%cr0
        ljmpl $8,$bsp32

ap16:                           # AP arrives here from the 0x8000 trampoline
        cli
        xor %ax,%ax
        mov %ax,%ds
        lgdtl gdtdesc
        mov %cr0,%eax
        or $1,%eax
        mov %eax,%cr0
        ljmpl $8,$ap32

        .code32
setseg:
        mov $16,%ax
        mov %ax,%ds
        mov %ax,%es
        mov %ax,%fs
        mov %ax,%gs
        mov %ax,%ss
        ret

bsp32:
        mov $16,%ax
        mov %ax,%ss
        mov $0x7000,%esp
        call setseg
        mov $'A',%al
        mov $0x3f8,%dx
        outb %al,%dx
        # trampoline at 0x8000: ljmp $0x0000,$ap16  (EA lo hi 00 00)
        movb $0xEA,0x8000
        movw $ap16,0x8001
        movw $0,0x8003
        # enable local APIC (SVR = 0x1FF)
        movl $0x1FF,0xFEE000F0
        # INIT to all-excluding-self
        movl $0,0xFEE00310
        movl $0x000C4500,0xFEE00300
        mov $2000000,%ecx
1:      loop 1b
        # SIPI x2, vector 0x08
        movl $0x000C4608,0xFEE00300
        mov $200000,%ecx
1:      loop 1b
        movl $0x000C4608,0xFEE00300
        mov $0x00100000,%esi    # start 1 MiB
        mov $30464,%ecx         # pages in [1 MiB, 120 MiB)
        mov $1,%ebx             # LCG seed of vCPU 0
        mov $'B',%ebp
        jmp work

ap32:
        mov $16,%ax
        mov %ax,%ss
        mov $0x6000,%esp
        call setseg
        mov $'C',%al
        mov $0x3f8,%dx
        outb %al,%dx
        mov $0x07800000,%esi    # start 120 MiB
        mov $30720,%ecx         # pages in [120 MiB, 240 MiB)
        mov $2,%ebx             # LCG seed of vCPU 1
        mov $'D',%ebp
        # fallthrough

# esi: first byte of the half, ecx: its page count, ebx: LCG state x, ebp: marker letter,
# edi: iterations done.
work:
        xor %edi,%edi
mainloop:
        imul $1103515245,%ebx,%ebx  # x = x * 1103515245 + 12345 (mod 2^32)
        add $12345,%ebx
        mov %ebx,%eax
        shr $8,%eax
        xor %edx,%edx
        div %ecx                # edx = (x >> 8) mod pages-in-half
        shl $12,%edx
        incb (%esi,%edx)
        inc %edi
        test $MARKER_MASK,%edi
        jnz mainloop
        mov %ebp,%eax
        mov $0x3f8,%dx
        outb %al,%dx
        jmp mainloop

        .p2align 2
gdt:
        .word 0,0
        .byte 0,0,0,0
        .word 0xFFFF,0          # code: base 0, 4 GiB, 32-bit, exec/read
        .byte 0,0x9A,0xCF,0
        .word 0xFFFF,0          # data: base 0, 4 GiB, 32-bit, read/write
        .byte 0,0x92,0xCF,0
gdtdesc:
        .word 0x17
        .long gdt

        .org 0x1fe
        .byte 0x55
        .byte 0xAA
