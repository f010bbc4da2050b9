/*
 * Call records, for callvoxd's main(); core files only.
 */
#ifndef CVX_CDR_IMPL_H
#define CVX_CDR_IMPL_H

/* Registers the [cdr] section and the call records' start and reload hooks. */
int cvx__cdr_setup(void);

#endif
