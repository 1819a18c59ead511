rule php_webshell_eval_request
{
    meta:
        description = "PHP web shell: request data passed to eval, assert or system"
        description_vi = "Web shell PHP: dữ liệu yêu cầu được đưa vào eval, assert hoặc system"
        severity = "critical"
        mitre_attack = "T1505.003"
    strings:
        $php = "<?php" nocase
        $e1 = /(eval|assert|system|passthru|shell_exec)\s*\(\s*(base64_decode\s*\(\s*)?\$_(POST|GET|REQUEST|COOKIE)/ nocase
        $e2 = /@eval\s*\(\s*\$_(POST|GET|REQUEST)\s*\[/ nocase
    condition:
        $php and any of ($e*)
}

rule jsp_webshell_runtime_exec
{
    meta:
        description = "JSP web shell: request parameter run through Runtime.exec"
        description_vi = "Web shell JSP: tham số yêu cầu được chạy qua Runtime.exec"
        severity = "critical"
        mitre_attack = "T1505.003"
    strings:
        $a = "Runtime.getRuntime().exec(request.getParameter(" nocase
    condition:
        $a
}
