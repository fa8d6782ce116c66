/* The accelerator probe: a boot sector that goes straight from real mode
 * to 64-bit long mode (identity-mapped 2 MiB page), fills 64 KiB, sums it
 * through calls, and writes L to the debug port 0xe9 when the sum is right
 * (F when it is not). Rebuild accel_probe.bin with:
 *   as --32 -o probe.o accel_probe.S
 *   ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o accel_probe.bin probe.o
 */
    .code16
    .globl _start
_start:
    cli
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw $0x7c00, %sp
    movw $0x1000, %di
    movw $0x1800, %cx
    rep stosw
    movw $0x2003, 0x1000
    movw $0x3003, 0x2000
    movw $0x0083, 0x3000
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $0x1000, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    lgdtl gdt_ptr
    ljmpl $0x08, $long_mode
    .code64
long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %ss
    movq $0x90000, %rsp
    /* fill 64 KiB with 0..8191 as quadwords, then sum them through calls */
    movq $0x10000, %rdi
    xorq %rax, %rax
1:  movq %rax, (%rdi,%rax,8)
    incq %rax
    cmpq $8192, %rax
    jne 1b
    xorq %rbx, %rbx
    xorq %rcx, %rcx
2:  call add_entry
    incq %rcx
    cmpq $8192, %rcx
    jne 2b
    movq $33550336, %rdx
    cmpq %rdx, %rbx
    jne fail
    movb $'L', %al
    outb %al, $0xe9
3:  hlt
    jmp 3b
fail:
    movb $'F', %al
    outb %al, $0xe9
    jmp 3b
add_entry:
    addq (%rdi,%rcx,8), %rbx
    ret
    .p2align 3
gdt:
    .quad 0
    .quad 0x00209A0000000000
    .quad 0x0000920000000000
gdt_ptr:
    .word gdt_ptr - gdt - 1
    .long gdt
    .org 510
    .word 0xaa55
