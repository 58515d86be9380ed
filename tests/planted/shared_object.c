/* A planted extension module for the free-threaded build (compiled against its headers): each call
 * takes and drops references to one object every thread shares (the interpreter's biased
 * reference counts, inlined here from its headers) and, in `racy`, also writes a static of its
 * own with no lock. Under helgrind with the GIL off, the first is the interpreter's doing and the
 * second is this library's race; the race pass's attribution must tell them apart. */
#include <Python.h>

static long counter;

static PyObject *touch(PyObject *self, PyObject *shared) {
    for (int k = 0; k < 50; k++) {
        Py_INCREF(shared);
        Py_DECREF(shared);
    }
    Py_RETURN_NONE;
}

static PyObject *racy(PyObject *self, PyObject *shared) {
    for (int k = 0; k < 50; k++) {
        Py_INCREF(shared);
        counter += k;
        Py_DECREF(shared);
    }
    return PyLong_FromLong(counter);
}

static PyMethodDef methods[] = {
    {"touch", touch, METH_O, "references to a shared object only"},
    {"racy", racy, METH_O, "references, and an unlocked static"},
    {NULL, NULL, 0, NULL}};
static PyModuleDef_Slot slots[] = {
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "shared_object", NULL, 0, methods, slots};
PyMODINIT_FUNC PyInit_shared_object(void) { return PyModuleDef_Init(&def); }
