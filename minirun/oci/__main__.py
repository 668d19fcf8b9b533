from minirun.oci.main import program

program()
