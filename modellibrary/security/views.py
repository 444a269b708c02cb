"""The login page: Django's LoginView (``next`` checked against the site's own
host) with the lockout's message and a 429 + ``Retry-After`` while locked."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView as DjangoLoginView
from django.http import HttpResponse

from modellibrary.security.backends import login_locked_for


class LockoutAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "locked": "Too many failed attempts for this username from your address. Try again in %(minutes)s.",
    }

    def clean(self) -> dict[str, Any]:
        wait = login_locked_for(self.request, self.cleaned_data.get("username"))
        if wait:
            minutes = max(1, round(wait / 60))
            self.locked_for_s = wait
            raise forms.ValidationError(
                self.error_messages["locked"],
                code="locked",
                params={"minutes": f"{minutes} minute{'s' if minutes != 1 else ''}"},
            )
        return super().clean()


class LoginView(DjangoLoginView):
    form_class = LockoutAuthenticationForm
    redirect_authenticated_user = False

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        wait = getattr(form, "locked_for_s", 0)
        if wait:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response
