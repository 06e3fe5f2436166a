module example.invalid/nixhold-example

go 1.19
