rule eicar_test_file
{
    meta:
        description = "EICAR anti-malware test file"
        description_vi = "Tệp thử nghiệm chống mã độc EICAR"
        severity = "medium"
        mitre_attack = "T1105"
        reference = "https://www.eicar.org/download-anti-malware-testfile/"
    strings:
        $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    condition:
        $eicar
}
